// worldgame export-web: the page that dreams by itself. Keys (and the on-screen pad) -> the action ring ->
// the checkpoint's play sampler (sampler.js, plans.json) on ONNX Runtime Web (WASM) -> decode -> canvas,
// at the game's tick rate. Every file it reads is in its own folder (the page's Content-Security-Policy
// allows nothing else); JSON is parsed, never evaluated.
// Query: ?seed=N (start context and noise seed), ?steps=N, ?sampler=lcm|ddim|dpmsolver, ?fps=0 (unpaced:
// as fast as it can, for measuring), ?play=0 (load only: tests drive window.worldgame.api).
import * as ort from "./ort.wasm.min.mjs";
import { Gaussian, NoiseQueue, Rings, chosenAction, parseBindings, planFor, sampleFrame, toRGBA, withCode } from "./sampler.js";

const $ = (id) => document.getElementById(id);
const canvas = $("game"), ctx2d = canvas.getContext("2d"), hud = $("hud"), notice = $("notice");
const KEY_NAMES = { ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right", " ": "space",
  Enter: "return", Shift: "left shift", Control: "left ctrl", Alt: "left alt" };
const LABELS = { lcm: "LCM", ddim: "DDIM", dpmsolver: "DPM++ 2M" };
const STEP_COUNTS = [1, 2, 4, 8];
const query = new URLSearchParams(location.search);
const page = { frames: 0, fps: 0, ready: false, error: null, steps: 0, sampler: "", action: 0, seed: 0, score: null,
  lives: null, agent: false, code: null, stages: {}, api: null };
window.worldgame = page;  // for tests and the curious

async function fetchBytes(name) {
  const r = await fetch(name);
  if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
  return r.arrayBuffer();
}
const fetchJSON = async (name) => JSON.parse(new TextDecoder().decode(await fetchBytes(name)));

function tensor(type, data, dims) { return new ort.Tensor(type, data, dims); }

/** The denoiser as sampler.js wants it: forFrame(context, actions, level) -> step(z, t). */
function makeNet(sessions, meta) {
  const [C, h, w] = meta.latent, K = meta.context_length;
  const pick = (session, feeds) => Object.fromEntries(session.inputNames.map((n) => [n, feeds[n]]));
  const ctxFeeds = (context, actions, level) => ({ context: tensor("float32", context, [1, K, C, h, w]),
    actions: tensor("int64", actions, [1, actions.length]), context_noise: tensor("float32", Float32Array.of(level), [1]) });
  const stepFeeds = (z, t) => ({ noisy: tensor("float32", z, [1, C, h, w]), timesteps: tensor("int64", BigInt64Array.of(BigInt(t)), [1]) });
  const one = sessions["denoiser.onnx"];
  if (one) {
    return { async forFrame(context, actions, level) {
      const feeds = ctxFeeds(context, actions, level);
      return async (z, t) => (await one.run(pick(one, { ...feeds, ...stepFeeds(z, t) }))).out.data;
    } };
  }
  const first = sessions["context.onnx"], step = sessions["step.onnx"];  // the feature_cache denoiser: two graphs
  return { async forFrame(context, actions, level) {
    const features = await first.run(pick(first, ctxFeeds(context, actions, level)));
    return async (z, t) => (await step.run(pick(step, { ...features, ...stepFeeds(z, t) }))).out.data;
  } };
}

const channel = new MessageChannel(), waiting = [];
channel.port1.onmessage = () => waiting.shift()();
const yieldNow = () => new Promise((r) => { waiting.push(r); channel.port2.postMessage(0); });

async function main() {
  const [meta, plans, starts] = await Promise.all([fetchJSON("meta.json"), fetchJSON("plans.json"), fetchBytes("starts.bin")]);
  const isolated = self.crossOriginIsolated === true;  // threads need COOP/COEP headers from the host
  // measured on a 2-core machine: 2 threads ran slower than 1 (docs/export-web.md), so threads only from 4 cores up
  const cores = navigator.hardwareConcurrency || 1;
  ort.env.wasm.numThreads = isolated && cores >= 4 ? Math.min(4, cores) : 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const sessions = {};
  for (const part of meta.parts) sessions[part] = await ort.InferenceSession.create(await fetchBytes(part), options);
  const [C, h, w] = meta.latent, K = meta.context_length, L = C * h * w, size = meta.frame_size;
  const startLatents = new Float32Array(starts);
  if (startLatents.length !== meta.starts.count * K * L) throw new Error("starts.bin does not match meta.json");
  const net = makeNet(sessions, meta);
  const bindings = parseBindings(meta.action_names, meta.key_bindings);
  const gameKeys = new Set(bindings.flatMap(([, keys]) => [...keys]));
  const rings = new Rings(K, L), noise = new Gaussian(0), agentNoise = new Gaussian(1);
  const image = ctx2d.createImageData(size, size);
  canvas.width = canvas.height = size;

  let sampler = ["lcm", "ddim", "dpmsolver"].includes(query.get("sampler")) ? query.get("sampler") : meta.play.sampler;
  let spacing = sampler === meta.play.sampler ? meta.play.spacing : null;
  let steps = STEP_COUNTS.includes(+query.get("steps")) ? +query.get("steps") : meta.steps;
  let plan = planFor(plans, sampler, spacing, steps);
  let startIndex = Math.max(0, +query.get("seed") || Math.floor(Math.random() * 1e9)), held = [], overUntil = 0;
  const tickHz = query.get("fps") === "0" ? 0 : meta.tick_hz;
  const events = meta.events, score = { score: 0, lives: events ? events.start_lives : null };

  function choose(name, sp, n) {
    plan = planFor(plans, name, sp, n); sampler = name; spacing = sp; steps = n;
    Object.assign(page, { sampler, steps });
    for (const b of document.querySelectorAll("#stepbar button")) b.classList.toggle("on", +b.dataset.steps === steps);
    $("sampler").value = sampler;
  }

  function reset() {
    const seed = startIndex++;
    const i = seed % meta.starts.count;
    rings.start(startLatents.subarray(i * K * L, (i + 1) * K * L));
    noise.seed(seed); agentNoise.seed(seed ^ 0x5eed);
    score.score = 0; score.lives = events ? events.start_lives : null; overUntil = 0;
    page.seed = seed;
    notice.textContent = `dreaming ${meta.game} from real start ${i} (seed ${seed})`;
  }

  async function decode(z) {
    const r = await sessions["decoder.onnx"].run({ latents: tensor("float32", z, [1, C, h, w]) });
    return r.out.data;
  }

  // the chance code (checkpoints with chance.onnx): drawn from the prior once a frame, before the steps
  const chance = meta.chance, chanceTemperature = 1.0;
  async function conditions(context, actions, noiseSource) {
    if (!chance) return actions;
    const noise = noiseSource.gumbel(chance.groups * chance.values);
    const code = (await sessions["chance.onnx"].run({ context: tensor("float32", context, [1, K, C, h, w]),
      actions: tensor("int64", actions, [1, K]), noise: tensor("float32", noise, [1, chance.groups, chance.values]),
      temperature: tensor("float32", Float32Array.of(chanceTemperature), []) })).code.data;
    return withCode(actions, code);
  }

  async function agentAction() {
    const logits = (await sessions["agent.onnx"].run({ window: tensor("float32", rings.context, [1, K, C, h, w]) })).logits.data;
    const top = Math.max(...logits), p = Array.from(logits, (v) => Math.exp(v - top)), sum = p.reduce((a, b) => a + b, 0);
    let u = agentNoise.uniform() * sum;
    for (let a = 0; a < p.length; a++) { u -= p[a]; if (u <= 0) return a; }
    return p.length - 1;
  }

  // the transition's event: drawn with the frame (the chance code's group 0, models/chance.py
  // event_of), or the event head's reading of the frame dreamed
  const EVENT_SIGNS = [0, 1, -1];
  async function readEvents() {
    let sign, ended;
    if (events.drawn) {
      const v = page.code[0], known = v < 2 * EVENT_SIGNS.length;
      sign = known ? EVENT_SIGNS[v % EVENT_SIGNS.length] : 0; ended = known && v >= EVENT_SIGNS.length;
    } else {
      const r = await sessions["events.onnx"].run({ window: tensor("float32", rings.context, [1, K, C, h, w]),
        action: tensor("int64", BigInt64Array.of(rings.actions[K - 1]), [1]) });
      const logits = r.logits.data;
      sign = logits.indexOf(Math.max(...logits)) - 1;
      ended = events.end_threshold !== null && r.end.data[0] > events.end_threshold;
    }
    if (sign > 0) score.score += 1;
    else if (sign < 0) { if (score.lives === null) score.score -= 1; else score.lives = Math.max(0, score.lives - 1); }
    if (ended && score.lives !== null) score.lives = 0;
    return ended || score.lives === 0;
  }

  async function frame() {
    const t0 = performance.now();
    const action = page.agent ? await agentAction() : chosenAction(bindings, held);
    rings.pushAction(action);
    const t1 = performance.now();
    const acts = await conditions(rings.context, rings.actions, noise);
    if (chance) page.code = Array.from(acts.subarray(K), Number);
    const z = await sampleFrame(net, sampler, plan, meta.prediction_type, rings.context, acts, meta.context_noise, noise, L);
    rings.pushLatent(z);
    const t2 = performance.now();
    const x = await decode(z);
    toRGBA(x, size, size, image.data);
    ctx2d.putImageData(image, 0, 0);
    const t3 = performance.now();
    let over = false;
    if (events) over = await readEvents();
    const t4 = performance.now();
    Object.assign(page.stages, { input: t1 - t0, denoise: t2 - t1, decode: t3 - t2, events: t4 - t3 });
    page.action = action; page.score = score.score; page.lives = score.lives;
    page.frames++;
    return over;
  }

  // --- the API the tests drive: the same rules on given starts, actions and noise ---------------
  page.api = {
    meta, plans,
    plan: (name, sp, n) => planFor(plans, name, sp, n),
    /** latents of ``actions.length`` frames from ``start`` (K*L floats) with ``noise`` (arrays, in Python's order). */
    async dream(start, actions, noiseArrays, name, sp, n) {
      const r = new Rings(K, L), q = new NoiseQueue(noiseArrays), p = planFor(plans, name, sp, n), out = [];
      r.start(start);
      for (const a of actions) {
        r.pushAction(a);
        const acts = await conditions(r.context, r.actions, q);
        const z = await sampleFrame(net, name, p, meta.prediction_type, r.context, acts, meta.context_noise, q, L);
        r.pushLatent(z); out.push(z);
      }
      return out;
    },
  };

  // --- controls -----------------------------------------------------------------------------------
  const keyName = (e) => KEY_NAMES[e.key] || e.key.toLowerCase();
  function press(name) { if (!held.includes(name) && held.length < 8) held.push(name); }
  function release(name) { const i = held.indexOf(name); if (i >= 0) held.splice(i, 1); }
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT") return;
    const name = keyName(e);
    if (gameKeys.has(name)) { e.preventDefault(); if (!e.repeat) press(name); return; }
    if (e.repeat) return;
    if (STEP_COUNTS.map(String).includes(name)) choose(sampler, spacing, +name);
    else if (name === "backspace") { e.preventDefault(); reset(); }
    else if (name === "g" && sessions["agent.onnx"]) toggleAgent();
  });
  document.addEventListener("keyup", (e) => release(keyName(e)));
  window.addEventListener("blur", () => { held = []; });
  for (const n of STEP_COUNTS) {
    const b = document.createElement("button");
    b.textContent = String(n); b.dataset.steps = String(n);
    b.onclick = () => { choose(sampler, spacing, n); canvas.focus(); };
    $("stepbar").appendChild(b);
  }
  $("sampler").onchange = (e) => { const name = e.target.value; choose(name, name === meta.play.sampler ? meta.play.spacing : null, steps); canvas.focus(); };
  $("reset").onclick = () => { reset(); canvas.focus(); };
  function toggleAgent() { page.agent = !page.agent; $("agent").classList.toggle("on", page.agent); }
  if (sessions["agent.onnx"]) $("agent").onclick = () => { toggleAgent(); canvas.focus(); };
  else $("agent").remove();
  const ARROWS = { UP: "↑", DOWN: "↓", LEFT: "←", RIGHT: "→", FIRE: "fire" };
  for (const [name, combos] of Object.entries(meta.key_bindings)) {  // the on-screen pad (a phone has no keys): one button an action
    if (!combos.length) continue;
    const keys = combos[0].split("+").map((k) => k.trim()), b = document.createElement("button");
    b.textContent = ARROWS[name] || name.toLowerCase();
    b.onpointerdown = (e) => { e.preventDefault(); keys.forEach(press); };
    b.onpointerup = b.onpointerleave = b.onpointercancel = () => keys.forEach(release);
    $("pad").appendChild(b);
  }

  // --- the loop -------------------------------------------------------------------------------------
  const times = [];
  function showHud() {
    const s = page.stages, label = LABELS[sampler] + (spacing && sampler !== "lcm" ? ` (${spacing})` : "");
    const lines = [`FPS ${page.fps.toFixed(1)}   steps ${steps}   sampler ${label}   ${page.agent ? "agent plays (G)" : "you play"}`,
      `denoise (all steps) ${(s.denoise || 0).toFixed(1)} ms   VAE decode ${(s.decode || 0).toFixed(1)} ms` +
      (events ? `   events ${(s.events || 0).toFixed(1)} ms` : ""),
      `action ${meta.action_names[page.action]}   threads ${ort.env.wasm.numThreads}${isolated ? "" : " (no COOP/COEP: one thread)"}`];
    if (events) lines.push(`score ${score.score}` + (score.lives !== null ? `   lives ${score.lives}` : ""));
    if (chance && page.code) lines.push(`chance code ${page.code.join(" ")} (drawn from the prior)`);
    hud.textContent = lines.join("\n");
  }
  choose(sampler, spacing, steps);
  reset();
  page.ready = true;
  showHud();
  setInterval(showHud, 250);
  if (query.get("play") === "0") { notice.textContent = "loaded (play=0)"; return; }
  canvas.focus();
  let next = performance.now();
  for (;;) {
    if (overUntil) {
      if (performance.now() >= overUntil) reset();
      else { await new Promise((r) => setTimeout(r, 50)); continue; }
    }
    const over = await frame();
    const now = performance.now();
    times.push(now);
    while (times.length && times[0] < now - 1000) times.shift();
    page.fps = times.length > 1 ? (times.length - 1) * 1000 / (times[times.length - 1] - times[0]) : 0;
    if (over) { overUntil = now + 2000; notice.textContent = `GAME OVER — score ${score.score}; a new dream in 2 s`; }
    if (tickHz > 0) {
      next = Math.max(next + 1000 / tickHz, now - 1000 / tickHz);  // behind by more than a tick: drop the debt
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    } else {
      await yieldNow();  // unpaced: let the page handle its events, without setTimeout's 4 ms clamp
    }
  }
}

main().catch((e) => {
  page.error = String(e && e.message ? e.message : e);
  notice.textContent = "cannot play: " + page.error;
  console.error(e);
});
