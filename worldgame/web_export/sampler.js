// worldgame export-web: the dream's per-frame rules in JS, free of the DOM and of ONNX Runtime (node can
// import it): the key rule (worldgame/engine/keys.py chosen_action), the rings, the noise, and the
// prepared update rules of LCM, DDIM and DPM-Solver++ 2M (worldgame/models/samplers/lcm.py,
// ddim.py, dpmsolver.py) on the timesteps and coefficients of plans.json, which
// worldgame/commands/web_plans.py writes from the Python plans themselves.
//
// Every arithmetic op is rounded to float32 (Math.fround) as torch's float32 tensor ops are, so on
// the same network outputs the JS steps give Python's numbers; the network (ONNX Runtime Web's WASM
// kernels) is where the two differ.
"use strict";

const f = Math.fround;
export const NO_SPACING = "-";

// --- plans ---------------------------------------------------------------------------------------
/** The plan {timesteps, coefs} of ``sampler`` at ``spacing`` (null: its default) and ``steps``. */
export function planFor(plans, sampler, spacing, steps) {
  const bySpacing = plans.plans[sampler];
  if (!bySpacing) throw new Error(`no plans for sampler ${sampler}`);
  const sp = sampler === "lcm" ? NO_SPACING : (spacing || plans.default_spacing[sampler]);
  const plan = (bySpacing[sp] || {})[String(steps)];
  if (!plan) throw new Error(`no ${sampler} plan for spacing ${sp} and ${steps} steps`);
  return plan;
}

// --- the key rule --------------------------------------------------------------------------------
/** key_bindings (action name -> ["up", "up+space"]) as [action, Set(keys)] pairs, longest first. */
export function parseBindings(actionNames, keyBindings) {
  const out = [];
  for (const [name, combos] of Object.entries(keyBindings)) {
    const action = actionNames.indexOf(name);
    if (action < 0) continue;  // a stray binding is ignored, as KeyMap does
    for (const combo of combos) out.push([action, new Set(combo.split("+").map((k) => k.trim()))]);
  }
  return out.map((b, i) => [b, i]).sort((a, b) => (b[0][1].size - a[0][1].size) || (a[1] - b[1])).map((x) => x[0]);
}

/** THE key rule: the binding whose keys are all held with the most keys; among equals the one whose
 * newest key was pressed last; nothing held: 0. ``held``: key names, oldest press first. */
export function chosenAction(bindings, held) {
  if (!held.length) return 0;
  const order = new Map(held.map((k, i) => [k, i]));
  let best = 0, bestSize = 0, bestOrder = -1;
  for (const [action, keys] of bindings) {
    if (keys.size < bestSize) break;
    let all = true, newest = -1;
    for (const k of keys) { if (!order.has(k)) { all = false; break; } newest = Math.max(newest, order.get(k)); }
    if (all && newest > bestOrder) { best = action; bestSize = keys.size; bestOrder = newest; }
  }
  return best;
}

// --- noise ---------------------------------------------------------------------------------------
/** Standard normal draws from a seeded PRNG (mulberry32 + Box-Muller): play's noise. */
export class Gaussian {
  constructor(seed) { this.seed(seed); }
  seed(seed) { this.state = (seed >>> 0) ^ 0x9e3779b9; this.spare = null; }
  uniform() {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  }
  next(n) {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (this.spare !== null) { out[i] = this.spare; this.spare = null; continue; }
      const r = Math.sqrt(-2 * Math.log(this.uniform())), a = 2 * Math.PI * this.uniform();
      out[i] = r * Math.cos(a); this.spare = r * Math.sin(a);
    }
    return out;
  }
  gumbel(n) {  // Gumbel(0, 1): the chance code's draw
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = -Math.log(-Math.log(this.uniform()));
    return out;
  }
}

/** Noise handed in (a test: Python's draws, in the order the Python sampler draws them). */
export class NoiseQueue {
  constructor(arrays) { this.arrays = arrays; this.i = 0; }
  next(n) {
    const a = this.arrays[this.i++];
    if (!a || a.length !== n) throw new Error(`noise ${this.i - 1}: expected ${n} values, got ${a ? a.length : "none"}`);
    return a;
  }
  gumbel(n) { return this.next(n); }  // Python's Gumbel noise itself (models/chance.py gumbel_like)
}

// --- the chance code -------------------------------------------------------------------------------
/**
 * The K actions followed by the frame's G code values, what the denoiser takes. The code is drawn
 * by chance.onnx (models/chance.py ChanceCode.forward: Gumbel-max with the noise the page hands it,
 * drawn before the frame's other noise as Python draws it; a chained prior draws each group given
 * those before it inside the graph).
 */
export function withCode(actions, code) {
  const out = new BigInt64Array(actions.length + code.length);
  out.set(actions);
  out.set(code, actions.length);
  return out;
}

// --- the rings -----------------------------------------------------------------------------------
/** The K-latent and K-action rings of one dream (worldgame/models/rollout.py Rollout, batch 1). */
export class Rings {
  constructor(k, latentSize) {
    this.k = k; this.size = latentSize;
    this.context = new Float32Array(k * latentSize);  // oldest first, never fused
    this.actions = new BigInt64Array(k);  // actions[j] produced context[j]; the last is the current one
  }
  start(latents) { this.context.set(latents); this.actions.fill(0n); }
  pushAction(a) { this.actions.copyWithin(0, 1); this.actions[this.k - 1] = BigInt(a); }
  pushLatent(z) { this.context.copyWithin(0, this.size); this.context.set(z, (this.k - 1) * this.size); }
}

// --- the prepared update rules -------------------------------------------------------------------
/** x0 from the network output ``out`` at ``z`` (epsilon / v: with the step's two coefficients). */
function clean(pred, out, z, a, b) {
  if (pred === "sample") return Float32Array.from(out);
  const x0 = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) {
    x0[i] = pred === "epsilon" ? f(f(z[i] - f(b * out[i])) / a) : f(f(a * z[i]) - f(b * out[i]));  // v: a z - b out
  }
  return x0;
}

/**
 * One frame: the next latent (Float32Array) by ``sampler`` ("lcm" | "ddim" | "dpmsolver") with
 * ``plan`` ({timesteps, coefs}). ``net.forFrame(context, actions, level)`` resolves to
 * ``step(z, t) -> Promise<Float32Array>`` (the denoiser; the context's features once a frame).
 * ``noise.next(n)``: n standard normals, drawn as Python draws them: context noise (when the level
 * is > 0), the start latent, then LCM's re-noising before each step but the first.
 */
export async function sampleFrame(net, sampler, plan, pred, context, actions, contextNoise, noise, latentSize) {
  const level = f(contextNoise);
  let ctx = context;
  if (contextNoise > 0) {
    const n = noise.next(context.length);
    ctx = new Float32Array(context.length);
    for (let i = 0; i < ctx.length; i++) ctx[i] = f(context[i] + f(n[i] * level));
  }
  let z = Float32Array.from(noise.next(latentSize));
  const step = await net.forFrame(ctx, actions, level);
  const { timesteps, coefs } = plan, last = timesteps.length - 1, L = latentSize;
  if (sampler === "lcm") {
    let den = null;
    for (let s = 0; s <= last; s++) {
      const k = coefs[s], out = await step(z, timesteps[s]);
      const x0 = clean(pred, out, z, k.sqrt_a, k.sqrt_b);
      den = new Float32Array(L);
      for (let i = 0; i < L; i++) den[i] = f(f(k.c_out * x0[i]) + f(k.c_skip * z[i]));  // c_out x0 + c_skip z
      if (s < last) {  // re-noise the estimate to the next timestep
        const n = noise.next(L);
        for (let i = 0; i < L; i++) z[i] = f(f(k.sqrt_a_prev * den[i]) + f(k.sqrt_b_prev * n[i]));
      }
    }
    return den;
  }
  if (sampler === "ddim") {
    let x0 = null;
    for (let s = 0; s <= last; s++) {
      const k = coefs[s], out = await step(z, timesteps[s]);
      let eps = null;
      if (pred === "sample") {
        x0 = Float32Array.from(out);
        if (s < last) { eps = new Float32Array(L); for (let i = 0; i < L; i++) eps[i] = f(f(z[i] - f(k.sqrt_a * x0[i])) / k.sqrt_b); }
      } else if (pred === "epsilon") {
        x0 = clean(pred, out, z, k.sqrt_a, k.sqrt_b); eps = Float32Array.from(out);
      } else {  // v
        x0 = clean(pred, out, z, k.sqrt_a, k.sqrt_b);
        eps = new Float32Array(L); for (let i = 0; i < L; i++) eps[i] = f(f(k.sqrt_a * out[i]) + f(k.sqrt_b * z[i]));
      }
      if (s < last) for (let i = 0; i < L; i++) z[i] = f(f(k.sqrt_a_prev * x0[i]) + f(k.direction * eps[i]));
    }
    return x0;
  }
  if (sampler === "dpmsolver") {
    let previous = null;
    for (let s = 0; s <= last; s++) {
      const k = coefs[s], out = await step(z, timesteps[s]);
      const x0 = clean(pred, out, z, k.alpha_i, k.sigma_i);
      const next = new Float32Array(L);
      for (let i = 0; i < L; i++) next[i] = f(f(k.scale * z[i]) - f(k.x0 * x0[i]));
      if ("d1" in k) {  // second order: D1 = (1/r0)(x0 - x0'); z' -= half_x0 D1
        for (let i = 0; i < L; i++) next[i] = f(next[i] - f(k.half_x0 * f(k.d1 * f(x0[i] - previous[i]))));
      }
      z = next; previous = x0;
    }
    return z;
  }
  throw new Error(`unknown sampler ${sampler}`);
}

/** The VAE decoder's output (3, H, W) in [-1, 1] -> RGBA bytes (H, W, 4), as play shows it. */
export function toRGBA(x, h, w, into) {
  const plane = h * w, rgba = into || new Uint8ClampedArray(plane * 4);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.min(1, Math.max(-1, x[c * plane + p]));
      rgba[p * 4 + c] = Math.round((v + 1) * 127.5);
    }
    rgba[p * 4 + 3] = 255;
  }
  return rgba;
}
