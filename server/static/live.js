"use strict";
// Live page: zones and a source, the microphone sent as 48 kHz s16le PCM over a WebSocket,
// the emergency confirmation, and the sessions table polled every second.
(function () {
  const Loa = window.Loa;
  const form = document.getElementById("live-form");
  if (!form) return;
  const zoneNames = JSON.parse(document.getElementById("live-zone-names").textContent || "{}");
  const deviceNames = JSON.parse(document.getElementById("live-device-names").textContent || "{}");
  const RATE = 48000;
  const CHUNK = RATE / 25; // 40 ms of audio per WebSocket message
  const API = "/api/v1/live";

  // -- zones and source ---------------------------------------------------------------------
  const all = document.getElementById("zones-all");
  function zoneBoxes() {
    return Array.from(form.querySelectorAll("input[name=zone_ids]"));
  }
  if (all) {
    all.addEventListener("change", function () {
      zoneBoxes().forEach(function (box) { box.checked = all.checked; });
    });
  }
  form.addEventListener("change", function (event) {
    if (event.target.name === "zone_ids" && all) {
      all.checked = zoneBoxes().every(function (box) { return box.checked; });
    }
    if (event.target.name === "source") {
      form.querySelectorAll(".source-box").forEach(function (box) {
        box.hidden = box.dataset.source !== chosenSource();
      });
    }
  });
  form.addEventListener("submit", function (event) { event.preventDefault(); });

  function chosenSource() {
    return form.querySelector("input[name=source]:checked").value;
  }

  function chosenZones() {
    return zoneBoxes().filter(function (box) { return box.checked; });
  }

  // The request body, or an Error saying what is missing.
  function requestBody(priority) {
    const zones = chosenZones().map(function (box) { return Number(box.value); });
    if (!zones.length) throw new Error(Loa.t("live.js.pick_zone"));
    const body = { source: chosenSource(), zone_ids: zones, priority: priority };
    const label = form.elements.label.value.trim();
    if (label) body.label = label;
    if (body.source === "url") {
      // Only a registered relay source: the server opens no other address.
      const relay = document.getElementById("live-relay");
      if (!relay || !relay.value) throw new Error(Loa.t("live.js.need_url"));
      body.source = "relay";
      body.relay_source_id = Number(relay.value);
    } else if (body.source === "file") {
      const clip = document.getElementById("live-clip");
      if (!clip || !clip.value) throw new Error(Loa.t("live.js.need_clip"));
      body.clip_id = Number(clip.value);
    }
    return body;
  }

  // -- starting: straight away, or after the emergency confirmation --------------------------
  const dialog = document.getElementById("emergency-dialog");
  let pending = null;

  function begin(priority) {
    let body;
    try {
      body = requestBody(priority);
    } catch (err) {
      Loa.failed(err);
      return;
    }
    if (priority !== "emergency") {
      launch(body);
      return;
    }
    pending = body;
    const list = document.getElementById("emergency-zones");
    list.textContent = "";
    chosenZones().forEach(function (box) {
      const li = document.createElement("li");
      li.textContent = box.dataset.name;
      list.appendChild(li);
    });
    document.getElementById("emergency-source").textContent = Loa.t("live.js.src." + body.source);
    dialog.showModal();
  }

  if (dialog) {
    document.getElementById("emergency-cancel").addEventListener("click", function () {
      pending = null;
      dialog.close();
    });
    document.getElementById("emergency-confirm").addEventListener("click", function () {
      const body = pending;
      pending = null;
      dialog.close();
      if (body) launch(body);
    });
    dialog.addEventListener("cancel", function () { pending = null; });
  }

  async function launch(body) {
    if (body.source === "mic") {
      startMic(body);
      return;
    }
    Loa.flash(Loa.t("js.sending"), "info");
    try {
      await Loa.api("POST", API, body);
      Loa.flash(Loa.t("live.js.started_ok"), "info");
    } catch (err) {
      Loa.failed(err);
    }
    poll();
  }

  const priority = document.getElementById("live-priority");
  form.addEventListener("click", function (event) {
    const button = event.target.closest("[data-start]");
    if (button) {
      if (button.dataset.start === "mic" && mic.active) stopMic();
      else if (!(chosenSource() === "mic" && mic.active)) begin(priority.value);
      return;
    }
    if (event.target.closest("#emergency-button") && !mic.active) begin("emergency");
  });

  // -- microphone -----------------------------------------------------------------------------
  const micButton = document.getElementById("mic-button");
  const meter = document.getElementById("mic-level");
  const micStatus = document.getElementById("mic-status");
  const mic = {
    active: false, stopping: false, ws: null, ctx: null, stream: null, session: null,
    helloSent: false, ready: false, openedAt: 0,
  };
  let pcm = new DataView(new ArrayBuffer(CHUNK * 2));
  let filled = 0;
  let resample = null;
  let level = 0;

  function setMic(active, message) {
    mic.active = active;
    micButton.textContent = Loa.t(active ? "live.mic_stop" : "live.mic_start");
    micButton.classList.toggle("on", active);
    micStatus.textContent = message || "";
  }

  // Linear interpolation from the AudioContext's rate to 48 kHz, continuous across blocks.
  function resampler(fromRate) {
    const step = fromRate / RATE;
    let pos = 1; // in [previous last sample, block...] coordinates
    let last = 0;
    return function (block) {
      const n = block.length;
      const out = new Float32Array(Math.ceil((n + 1) / step) + 1);
      let k = 0;
      while (pos < n) {
        const i = Math.floor(pos);
        const f = pos - i;
        const a = i === 0 ? last : block[i - 1];
        out[k++] = a + (block[i] - a) * f;
        pos += step;
      }
      pos -= n;
      last = block[n - 1];
      return out.subarray(0, k);
    };
  }

  function feed(block) {
    let sum = 0;
    for (let i = 0; i < block.length; i++) sum += block[i] * block[i];
    const rms = Math.sqrt(sum / Math.max(block.length, 1));
    // dBFS from -60 to 0 on the meter; falls slowly so speech does not flicker.
    const target = rms > 0 ? Math.min(Math.max((20 * Math.log10(rms) + 60) / 60, 0), 1) : 0;
    level = Math.max(target, level * 0.85);
    meter.value = level;
    meter.dataset.rms = rms.toFixed(4);
    const ws = mic.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !mic.helloSent) return;
    const samples = resample ? resample(block) : block;
    for (let i = 0; i < samples.length; i++) {
      const v = Math.max(-1, Math.min(1, samples[i]));
      pcm.setInt16(filled * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
      if (++filled === CHUNK) {
        ws.send(pcm.buffer);
        pcm = new DataView(new ArrayBuffer(CHUNK * 2));
        filled = 0;
      }
    }
  }

  async function openAudio() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error(Loa.t("live.js.no_mic"));
    }
    try {
      mic.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      throw new Error(Loa.t("live.js.mic_denied") + ": " + err.message);
    }
    let input;
    try {
      mic.ctx = new AudioContext({ sampleRate: RATE }); // the browser resamples for us
      input = mic.ctx.createMediaStreamSource(mic.stream);
    } catch (err) {
      if (mic.ctx) mic.ctx.close();
      mic.ctx = new AudioContext(); // e.g. Firefox: sources must share the device's rate
      input = mic.ctx.createMediaStreamSource(mic.stream);
    }
    resample = mic.ctx.sampleRate === RATE ? null : resampler(mic.ctx.sampleRate);
    const mute = mic.ctx.createGain(); // the graph must reach the speakers to run; silently
    mute.gain.value = 0;
    mute.connect(mic.ctx.destination);
    if (mic.ctx.audioWorklet && window.AudioWorkletNode) {
      await mic.ctx.audioWorklet.addModule("/static/live-worklet.js");
      const node = new AudioWorkletNode(mic.ctx, "loa-capture");
      node.port.onmessage = function (event) { feed(event.data); };
      input.connect(node).connect(mute);
    } else {
      const node = mic.ctx.createScriptProcessor(2048, 1, 1);
      node.onaudioprocess = function (event) { feed(event.inputBuffer.getChannelData(0)); };
      input.connect(node).connect(mute);
    }
    await mic.ctx.resume();
  }

  function closeAudio() {
    if (mic.stream) mic.stream.getTracks().forEach(function (track) { track.stop(); });
    if (mic.ctx) mic.ctx.close();
    mic.stream = null;
    mic.ctx = null;
    meter.value = 0;
    level = 0;
    filled = 0;
  }

  async function startMic(body) {
    mic.stopping = false;
    mic.helloSent = false;
    setMic(true, Loa.t("live.js.connecting"));
    try {
      await openAudio();
      const session = await Loa.api("POST", API, body);
      mic.session = session.id;
      const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      const ws = new WebSocket(scheme + window.location.host + session.ingest_url);
      ws.binaryType = "arraybuffer";
      mic.ws = ws;
      ws.addEventListener("open", function () {
        // The session cookie authenticates the socket: the hello names the format only.
        ws.send(JSON.stringify({ format: "pcm_s16le", sample_rate: RATE }));
        mic.helloSent = true;
        mic.openedAt = Date.now();
        mic.ready = false;
        poll(); // says whether the clusters are ready (micReadiness)
      });
      ws.addEventListener("close", function (event) {
        if (mic.ws !== ws) return;
        mic.ws = null;
        if (!mic.stopping) {
          const why = event.reason || String(event.code);
          if (event.code === 4000) Loa.flash(Loa.t("live.js.stopped") + " " + event.reason, "info");
          else Loa.failed(new Error(Loa.t("live.js.mic_closed") + ": " + why));
        }
        closeAudio();
        setMic(false);
        poll();
      });
      poll();
    } catch (err) {
      Loa.failed(err);
      closeAudio();
      setMic(false);
    }
  }

  function stopMic() {
    mic.stopping = true;
    const ws = mic.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      if (filled) ws.send(pcm.buffer.slice(0, filled * 2));
      ws.send(JSON.stringify({ type: "stop" }));
      window.setTimeout(function () { ws.close(); }, 3000); // the server closes it first
    } else if (mic.session) {
      Loa.api("DELETE", API + "/" + mic.session).catch(Loa.failed);
      if (ws) ws.close();
    }
    mic.ws = null;
    closeAudio();
    setMic(false, Loa.t("live.js.stopped"));
    window.setTimeout(poll, 300);
  }

  // -- sessions -------------------------------------------------------------------------------
  const box = document.getElementById("live-sessions");
  const cards = new Map();
  const ENDED_SHOWN = 5;

  function text(tag, className, content) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (content !== undefined) el.textContent = content;
    return el;
  }

  function fact(dl, key, label) {
    dl.append(text("dt", "", Loa.t(label)));
    const dd = text("dd");
    dd.dataset.field = key;
    dl.append(dd);
  }

  // The server and the devices word end reasons and details in English for logs and the
  // API; the console shows the known ones through the catalogue, anything else as a
  // technician's detail (a <code> element).
  const REASONS = [
    [/^the microphone ended the broadcast$/, "live.js.why.mic"],
    [/^the file ended$/, "live.js.why.file"],
    [/^the piped audio ended$/, "live.js.why.pipe"],
    [/^the sender stopped the broadcast$/, "live.js.why.sender"],
    [/^the clip finished$/, "live.js.why.clip"],
    [/^the source ended$/, "live.js.why.source"],
    [/^the server stopped$/, "live.js.why.server"],
    [/^the server process running it stopped answering$/, "live.js.why.server"],
    [/^stopped by (.+)$/, "live.js.why.stopped_by"],
    [/^the duration limit of ([\d.]+) s was reached$/, "live.js.why.duration"],
    [/^the microphone sent no audio for ([\d.]+) s$/, "live.js.why.idle"],
    [/^frames played (\d+), concealed (\d+), late (\d+), dropped (\d+)$/, "live.js.why.frames"],
    [/^joined \S+$/, "live.js.why.joined"],
    [/^left$/, "live.js.why.left"],
    [/^already playing this session$/, "live.js.why.joined"],
    [/^not playing this session$/, "live.js.why.left"],
  ];

  function said(textIn) {
    const value = textIn || "";
    for (const [pattern, key] of REASONS) {
      const found = value.match(pattern);
      if (found) {
        let out = Loa.t(key);
        found.slice(1).forEach(function (part, i) { out = out.replace("{" + i + "}", part); });
        return out;
      }
    }
    return null;
  }

  function saidNode(textIn) {
    const known = said(textIn);
    if (known !== null || !textIn) return document.createTextNode(known || "–");
    return text("code", "tech", textIn);
  }

  function newCard(s) {
    const card = text("article", "live-session");
    card.dataset.id = s.id;
    const head = text("div", "live-head");
    head.append(text("span", "badge", ""), text("span", "badge", ""), text("strong", "title", ""));
    const stop = text("button", "danger stop", Loa.t("live.js.stop"));
    stop.type = "button";
    stop.addEventListener("click", async function () {
      stop.disabled = true;
      if (mic.session === s.id) mic.stopping = true;
      try {
        await Loa.api("DELETE", API + "/" + s.id);
        Loa.flash(Loa.t("live.js.stopped"), "info");
      } catch (err) {
        Loa.failed(err);
        stop.disabled = false;
      }
      poll();
    });
    head.append(stop);
    const dl = text("dl", "facts");
    fact(dl, "source", "live.js.source");
    fact(dl, "started", "live.js.started");
    fact(dl, "listeners", "live.js.listeners");
    fact(dl, "frames", "live.js.frames");
    fact(dl, "reason", "live.js.reason");
    const table = text("table", "cards live-devices");
    const labels = ["live.js.device", "live.js.zone", "live.js.status", "live.js.detail"];
    const tr = text("tr");
    labels.forEach(function (key) { tr.append(text("th", "", Loa.t(key))); });
    table.append(text("thead"), text("tbody"));
    table.tHead.append(tr);
    // The devices fold away once the session ends, so old sessions take little room.
    const devices = text("details", "live-devices-box");
    devices.append(text("summary", "", Loa.t("live.js.devices")), table);
    card.append(head, dl, devices);
    return card;
  }

  function cell(labelKey, content) {
    const td = text("td");
    td.dataset.label = Loa.t(labelKey);
    if (content instanceof Node) td.append(content);
    else td.textContent = content;
    return td;
  }

  function update(card, s) {
    const running = s.state === "running";
    if (card.dataset.state !== s.state) card.querySelector("details").open = running;
    card.dataset.state = s.state;
    const [state, prio, title] = card.querySelectorAll(".live-head > span, .live-head > strong");
    state.className = "badge live-" + s.state;
    state.textContent = Loa.t(running ? "live.js.running" : "live.js.ended");
    prio.className = "badge prio-" + s.priority;
    prio.textContent = Loa.t("live.prio." + s.priority);
    title.textContent = s.label || Loa.t("live.js.src." + s.source);
    card.querySelector(".stop").hidden = !running;
    const field = function (key) { return card.querySelector("[data-field=" + key + "]"); };
    const status = s.source_status || {};
    field("source").textContent = Loa.t("live.js.src." + s.source);
    if (status.error) field("source").append(" — ", saidNode(status.error));
    field("started").textContent = new Date(s.started_at * 1000).toLocaleTimeString("vi-VN", {
      timeZone: "Asia/Ho_Chi_Minh",
    });
    field("listeners").textContent = s.listeners + " / " + s.targeted;
    field("frames").textContent = String(s.frames_sent);
    field("reason").replaceChildren(saidNode(s.end_reason));
    const tbody = card.querySelector("tbody");
    tbody.textContent = "";
    s.devices.forEach(function (d) {
      const tr = text("tr");
      tr.dataset.uid = d.uid;
      tr.dataset.status = d.status;
      const badge = text("span", "badge dev-" + d.status, Loa.t("live.js.dev." + d.status));
      tr.append(
        cell("live.js.device", deviceNames[d.uid] || d.uid),
        cell("live.js.zone", zoneNames[d.zone_id] || "#" + d.zone_id),
        cell("live.js.status", badge),
        cell("live.js.detail", d.detail ? saidNode(d.detail) : ""),
      );
      tbody.append(tr);
    });
  }

  // The operator speaks once the clusters can play it: a cluster answers its join only when
  // it can decode (its first session loads the codec, a second or more on a Pi). After
  // READY_WAIT_MS the words go out anyway, saying how many are ready.
  const READY_WAIT_MS = 3000;
  function micReadiness(s) {
    if (mic.session !== s.id || !mic.helloSent || mic.ready || s.state !== "running") return;
    const all = s.listeners >= s.targeted;
    const late = Date.now() - mic.openedAt >= READY_WAIT_MS;
    const counts = function (key) {
      return Loa.t(key).replace("{0}", String(s.listeners)).replace("{1}", String(s.targeted));
    };
    if (all) {
      mic.ready = true;
      micStatus.textContent = Loa.t("live.js.on_air");
    } else if (late) {
      micStatus.textContent = counts("live.js.on_air_some");
    } else {
      micStatus.textContent = counts("live.js.waiting_devices");
    }
  }

  function render(sessions) {
    const running = sessions.filter(function (s) { return s.state === "running"; });
    const ended = sessions.filter(function (s) { return s.state !== "running"; });
    const shown = running.concat(ended.slice(0, ENDED_SHOWN));
    const keep = new Set(shown.map(function (s) { return s.id; }));
    cards.forEach(function (card, id) {
      if (!keep.has(id)) {
        card.remove();
        cards.delete(id);
      }
    });
    const empty = box.querySelector("p.muted");
    if (empty) empty.hidden = shown.length > 0;
    shown.forEach(function (s, i) {
      let card = cards.get(s.id);
      if (!card) {
        card = newCard(s);
        cards.set(s.id, card);
      }
      update(card, s);
      micReadiness(s);
      const at = box.querySelectorAll("article.live-session")[i];
      if (at !== card) box.insertBefore(card, at || null);
    });
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      render(await Loa.api("GET", box.dataset.url));
    } catch (err) {
      Loa.failed(err);
    } finally {
      polling = false;
    }
  }

  poll();
  window.setInterval(function () {
    if (!document.hidden) poll();
  }, 1000);
})();
