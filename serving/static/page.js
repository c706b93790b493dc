// The page's only logic: submit a job (POST /v1/videos), poll it, show the video. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const keyBox = $("key");
keyBox.value = localStorage.getItem("reelforge-key") || "";

function headers() {
  const h = { "content-type": "application/json" };
  if (keyBox.value) h.authorization = "Bearer " + keyBox.value;
  return h;
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function problem(response) {
  // Every error has one body: {"detail": "what is wrong and what to change", "errors": [...], "request_id"}
  try {
    return (await response.json()).detail || response.statusText;
  } catch {
    return response.statusText;
  }
}

async function loadModel() {
  const r = await fetch("v1/model", { headers: headers() });
  if (!r.ok) {
    $("model").textContent = `model: ${r.status} ${await problem(r)}`;
    return;
  }
  const { model_name, version, shapes } = await r.json();
  $("model").textContent = `${model_name} v${version}`;
  // The shapes the model was trained at (width x height x frames), its default first.
  const option = ([w, h, t]) => new Option(`${w}×${h} · ${t} frames`, `${w}x${h}x${t}`);
  $("size").replaceChildren(...shapes.map(option));
}

function number(id) {
  const v = $(id).value;
  return v === "" ? null : Number(v);
}

async function generate(event) {
  event.preventDefault();
  localStorage.setItem("reelforge-key", keyBox.value);
  $("result").replaceChildren();
  $("go").disabled = true;
  const body = {
    prompt: $("prompt").value, seed: number("seed") ?? 0, steps: number("steps"),
    guidance: number("guidance"), format: $("format").value,
  };
  if ($("size").value) [body.width, body.height, body.num_frames] = $("size").value.split("x").map(Number);
  try {
    const r = await fetch("v1/videos", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (r.status !== 202) {
      const wait = r.headers.get("retry-after");
      say(`${r.status}: ${await problem(r)}${wait ? ` (retry in ${wait} s)` : ""}`, true);
      return;
    }
    await follow((await r.json()).url);
  } catch (e) {
    say(String(e), true);
  } finally {
    $("go").disabled = false;
  }
}

async function follow(url) {
  const bar = $("progress");
  bar.hidden = false;
  for (;;) {
    const r = await fetch(url.slice(1), { headers: headers() });
    if (!r.ok) { say(`${r.status}: ${await problem(r)}`, true); return; }
    const job = await r.json();
    bar.value = job.progress;
    say(`${job.status} · ${Math.round(job.progress * 100)}%` + (job.model_version ? ` · v${job.model_version}` : ""));
    if (job.status === "succeeded") return show(url, job);
    if (job.status === "failed" || job.status === "cancelled") { say(`${job.status}: ${job.error}`, true); return; }
    await new Promise((done) => setTimeout(done, 400));
  }
}

async function show(url, job) {
  const r = await fetch(url.slice(1) + "/content", { headers: headers() });
  const src = URL.createObjectURL(await r.blob());
  const el = document.createElement(job.request.format === "gif" ? "img" : "video");
  Object.assign(el, { src, alt: job.request.prompt, loop: true, autoplay: true, muted: true, controls: true });
  el.id = "video";
  $("result").replaceChildren(el);
  say(`done in ${job.timings.running_s} s on v${job.model_version}`);
}

$("form").addEventListener("submit", generate);
keyBox.addEventListener("change", loadModel);
loadModel();
