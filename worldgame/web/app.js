// worldgame serve's page: frames from the WebSocket onto a canvas, keys and controls back.
// Protocol: worldgame/commands/serve/protocol.py (binary frame: "WGF1", u32 number, u16 panels, u16 h, u16 w, RGB...).
// The live controls (their keys, buttons and the message each sends) come in hello.commands, from the
// one table in worldgame/engine/keys.py: nothing here names a control.
"use strict";
(function () {
  const canvas = document.getElementById("game");
  const ctx = canvas.getContext("2d");
  const hud = document.getElementById("hud");
  const notice = document.getElementById("notice");
  const KEY_NAMES = { ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right", " ": "space",
    Enter: "return", Shift: "left shift", Control: "left ctrl", Alt: "left alt" };
  const scratch = document.createElement("canvas");
  const sctx = scratch.getContext("2d");
  let hello = null, stats = null, held = [], received = 0, frameTimes = [], lastNumber = 0, recording = false;
  const page = { frames: 0, keysSent: 0, lastKeys: null };
  window.worldgame = page;  // for tests and the curious

  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.binaryType = "arraybuffer";
  const send = (obj) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj)); };

  function layout(panels) {
    const n = hello.frame_size, ns = hello.native_size;  // [h, w] or null (square)
    const scale = 8;
    let w = n * scale, h = n * scale;
    if (ns && ns[0] !== ns[1]) {
      const long = n * Math.max(1, Math.round(scale * Math.sqrt(Math.max(ns[0], ns[1]) / Math.min(ns[0], ns[1]))));
      const short = Math.max(1, Math.round(long * Math.min(ns[0], ns[1]) / Math.max(ns[0], ns[1])));
      if (ns[0] > ns[1]) { w = short; h = long; } else { w = long; h = short; }
    }
    const room = Math.max(320, document.body.clientWidth || 1600);  // never wider than the page
    const shrink = Math.min(1, room / (w * panels));
    w = Math.max(1, Math.floor(w * shrink)); h = Math.max(1, Math.floor(h * shrink));
    if (canvas.width !== w * panels || canvas.height !== h) { canvas.width = w * panels; canvas.height = h; }
    return [w, h];
  }

  function drawFrame(buf) {
    const dv = new DataView(buf);
    if (buf.byteLength < 14 || String.fromCharCode(dv.getUint8(0), dv.getUint8(1), dv.getUint8(2), dv.getUint8(3)) !== "WGF1") return;
    const number = dv.getUint32(4), panels = dv.getUint16(8), h = dv.getUint16(10), w = dv.getUint16(12);
    if (buf.byteLength !== 14 + panels * h * w * 3 || !hello) return;
    const [pw, ph] = layout(panels);
    const rgb = new Uint8Array(buf, 14);
    scratch.width = w; scratch.height = h;
    const img = sctx.createImageData(w, h);
    ctx.imageSmoothingEnabled = false;
    for (let p = 0; p < panels; p++) {
      const src = p * w * h * 3, out = img.data;
      for (let i = 0, j = src; i < w * h * 4; i += 4, j += 3) { out[i] = rgb[j]; out[i + 1] = rgb[j + 1]; out[i + 2] = rgb[j + 2]; out[i + 3] = 255; }
      sctx.putImageData(img, 0, 0);
      ctx.drawImage(scratch, 0, 0, w, h, p * pw, 0, pw, ph);
    }
    if (stats && stats.captions && panels > 1) drawCaptions(stats.captions, pw, ph);
    if (stats && stats.game_over) drawGameOver(stats.game_over);
    if (!page.frames) notice.textContent = `playing ${hello.game} (seed ${hello.seed})`;
    lastNumber = number; page.frames++;
    const now = performance.now();
    frameTimes.push(now);
    while (frameTimes.length && now - frameTimes[0] > 2000) frameTimes.shift();
  }

  // each panel's caption (the World Model view: real / model; Steps: the timestep), as the window draws them
  function drawCaptions(captions, pw, ph) {
    const size = Math.max(10, Math.round(ph / 24));
    ctx.font = `${size}px monospace`; ctx.textAlign = "left"; ctx.textBaseline = "top";
    captions.forEach((c, p) => {
      if (!c) return;
      const w = ctx.measureText(c).width;
      ctx.fillStyle = "rgba(0,0,0,0.6)"; ctx.fillRect(p * pw + 2, 2, w + 6, size + 4);
      ctx.fillStyle = "#eee"; ctx.fillText(c, p * pw + 5, 4);
    });
  }

  // the GAME OVER screen (the server holds the last frame): a box over the frame, title large
  function drawGameOver(lines) {
    const size = Math.max(12, Math.round(canvas.height / 16));
    ctx.font = `${2 * size}px monospace`;
    let w = ctx.measureText(lines[0]).width;
    ctx.font = `${size}px monospace`;
    for (const line of lines.slice(1)) w = Math.max(w, ctx.measureText(line).width);
    const h = size * (lines.length + 2), x = (canvas.width - w) / 2 - size, y = (canvas.height - h) / 2;
    ctx.fillStyle = "rgba(0, 0, 0, 0.78)";
    ctx.fillRect(x, y, w + 2 * size, h);
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    ctx.fillStyle = "#fa3"; ctx.font = `${2 * size}px monospace`;
    ctx.fillText(lines[0], canvas.width / 2, y + size / 2);
    ctx.fillStyle = "#ddd"; ctx.font = `${size}px monospace`;
    lines.slice(1).forEach((line, i) => ctx.fillText(line, canvas.width / 2, y + size * (2.7 + i)));
  }

  function fps() {
    if (frameTimes.length < 2) return 0;
    return (frameTimes.length - 1) * 1000 / (frameTimes[frameTimes.length - 1] - frameTimes[0]);
  }

  function showHud() {
    if (!hello) return;
    const lines = [`${hello.game}  FPS ${fps().toFixed(1)}  frame ${lastNumber}` + (stats && stats.player ? `  player ${stats.player}` : "")
      + (stats && stats.score ? `  ${stats.score}` : "") + (stats && stats.game_over ? "  GAME OVER" : "") + (recording ? "  ● REC" : "")];
    if (stats) {
      const more = (stats.settings || []).map((x) => "  " + x).join("");
      lines.push(`${stats.sampler || ""} steps ${stats.steps}  fusion ${stats.fusion}  view ${stats.view}${more}  server ${stats.server_fps.toFixed(1)} FPS  dropped ${stats.dropped}`);
      for (const [k, label] of Object.entries(hello.stages)) {
        const v = stats.stages_ms[k];
        lines.push(`  ${label.padEnd(16)} ${v === undefined ? "   -" : v.toFixed(2).padStart(7)} ms`);
      }
      if (stats.weights) lines.push("  φ weights " + stats.weights.map((x) => x.toFixed(2)).join(" "));
    }
    lines.push("keys: " + Object.entries(hello.key_bindings).map(([a, k]) => `${a} ${k.join("/")}`).join("  "));
    const shown = new Map();  // label -> keys (the step controls share one: 1/2/4/8 steps)
    for (const c of hello.commands) shown.set(c.label, [...(shown.get(c.label) || []), ...c.keys.map(keyLabel)]);
    lines.push([...shown].map(([label, keys]) => `${keys.join("/")} ${label}`).join("  "));
    hud.textContent = lines.join("\n");
  }

  function setButtons() {
    if (!hello || !stats) return;
    document.querySelectorAll("#modes button").forEach((b) => b.classList.toggle("on", b.dataset.view === stats.view));
    document.getElementById("steps").querySelectorAll("button").forEach((b) => b.classList.toggle("on", +b.dataset.steps === stats.steps));
    const f = document.getElementById("fusion"); if (document.activeElement !== f) f.value = stats.fusion;
    const states = stats.controls || {};
    for (const c of hello.commands) {  // a toggle's button is lit while it is on (pause, record, agent)
      const b = document.getElementById("command-" + c.value); if (b) b.classList.toggle("on", states[c.value] === true);
    }
  }

  // a key's name as the page shows it: N, Backspace, Tab
  function keyLabel(k) { return k.length === 1 ? k.toUpperCase() : k[0].toUpperCase() + k.slice(1); }

  // what a control sends (hello.commands, from the table): its own message with its fixed value, the
  // level after the current one, or nothing more; by default {"type": "command", "value": its name}
  function run(c) {
    const type = c.send || "command";
    if (type === "command") send({ type, value: c.value });
    else if (c.arg !== undefined) send({ type, value: c.arg });
    else if (c.levels) {
      const states = (stats && stats.controls) || {}, at = c.levels.indexOf(c.value in states ? states[c.value] : c.levels[0]);
      send({ type, value: c.levels[(at + 1) % c.levels.length] });
    } else send({ type });
  }

  function buildControls() {
    const modes = document.getElementById("modes");
    modes.textContent = "";
    for (const v of hello.views) {
      const b = document.createElement("button");
      b.textContent = v.label; b.dataset.view = v.value; b.id = "view-" + v.value;
      b.onclick = () => { send({ type: "view", value: v.value }); canvas.focus(); };
      modes.appendChild(b);
    }
    const steps = document.getElementById("steps");
    steps.textContent = "";
    for (const s of hello.step_counts) {
      const b = document.createElement("button");
      b.textContent = s; b.dataset.steps = s; b.id = "steps-" + s;
      b.onclick = () => { send({ type: "steps", value: s }); canvas.focus(); };
      steps.appendChild(b);
    }
    const commands = document.getElementById("commands");  // the live controls the server offers as buttons
    commands.textContent = "";
    for (const c of hello.commands) {
      if (c.button === false) continue;
      const b = document.createElement("button");
      b.textContent = `${c.label} (${c.keys.map(keyLabel).join("/")})`; b.id = "command-" + c.value;
      b.onclick = () => { run(c); canvas.focus(); };
      commands.appendChild(b);
    }
  }

  function sendKeys() {
    page.keysSent++; page.lastKeys = held.slice();
    send({ type: "keys", held: held });
  }

  function keyName(e) { return KEY_NAMES[e.key] || (e.key.length === 1 ? e.key.toLowerCase() : e.key.toLowerCase()); }

  document.addEventListener("keydown", (e) => {
    if (!hello || e.target.tagName === "SELECT") return;
    const name = keyName(e);
    if (e.repeat) { if (hello.keys.includes(name)) e.preventDefault(); return; }
    const control = hello.commands.find((c) => c.keys.includes(name));  // a control's key wins over a game key
    if (control) { if (!e.ctrlKey && !e.metaKey) e.preventDefault(); run(control); return; }
    if (hello.keys.includes(name) && !held.includes(name) && held.length < 8) {
      e.preventDefault(); held.push(name); sendKeys();
    }
  });
  document.addEventListener("keyup", (e) => {
    if (!hello) return;
    const name = keyName(e), i = held.indexOf(name);
    if (i >= 0) { held.splice(i, 1); sendKeys(); }
  });
  window.addEventListener("blur", () => { if (held.length) { held = []; sendKeys(); } });
  document.getElementById("fusion").onchange = (e) => { send({ type: "fusion", value: e.target.value }); canvas.focus(); };

  ws.onmessage = (e) => {
    if (typeof e.data !== "string") { drawFrame(e.data); return; }
    let m; try { m = JSON.parse(e.data); } catch (err) { return; }
    if (m.type === "hello") { hello = m; buildControls(); notice.textContent = `starting ${m.game} (seed ${m.seed})…`; canvas.focus(); }
    else if (m.type === "stats") {
      if (m.notice && (!stats || stats.notice !== m.notice)) notice.textContent = m.notice;  // "the agent plays ..."
      stats = page.stats = m; recording = m.recording; setButtons();
    }
    else if (m.type === "recording") {
      recording = m.active; notice.textContent = m.message;
      if (stats && stats.controls) stats.controls.record = m.active;  // until the next stats say so too
      setButtons();
    }
    else if (m.type === "busy" || m.type === "error" || m.type === "refused") { notice.textContent = m.message; }
  };
  ws.onopen = () => { notice.textContent = "connected: starting a dream…"; };
  ws.onclose = (e) => { notice.textContent = "disconnected" + (e.reason ? ": " + e.reason : "") + " — reload to play again"; };
  setInterval(showHud, 250);
})();
