"use strict";
// Clip pages: upload with a progress bar, compose, and the waveform drawn from stored peaks.
(function () {
  const Loa = window.Loa;

  const upload = document.getElementById("upload-form");
  if (upload) {
    upload.addEventListener("submit", function (event) {
      event.preventDefault();
      const bar = document.getElementById("upload-progress");
      const status = document.getElementById("upload-status");
      const button = upload.querySelector("[type=submit]");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", upload.getAttribute("action"));
      xhr.setRequestHeader("X-CSRF-Token", Loa.csrf);
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        bar.value = Math.round((100 * e.loaded) / e.total);
        status.textContent = bar.value < 100 ? Loa.t("js.uploading") + " " + bar.value + "%" : Loa.t("js.processing");
      });
      xhr.addEventListener("load", function () {
        let data = null;
        try {
          data = JSON.parse(xhr.responseText);
        } catch (err) {
          data = null;
        }
        if (xhr.status >= 200 && xhr.status < 300 && data) {
          window.location.href = "/clips/" + data.id;
          return;
        }
        button.disabled = false;
        bar.hidden = true;
        status.textContent = "";
        Loa.failed(new Error((data && data.detail) || String(xhr.status)));
      });
      xhr.addEventListener("error", function () {
        button.disabled = false;
        Loa.failed(new Error(Loa.t("js.network")));
      });
      bar.hidden = false;
      bar.value = 0;
      button.disabled = true;
      status.textContent = Loa.t("js.uploading");
      xhr.send(new FormData(upload));
    });
  }

  const compose = document.getElementById("compose-form");
  if (compose) {
    compose.addEventListener("submit", async function (event) {
      event.preventDefault();
      const f = new FormData(compose);
      const parts = [];
      if (f.get("chime_start")) parts.push({ type: "chime" });
      if ((f.get("text") || "").trim()) parts.push({ type: "text", text: f.get("text").trim() });
      if (f.get("clip_id")) parts.push({ type: "clip", clip_id: Number(f.get("clip_id")) });
      if (f.get("chime_end")) parts.push({ type: "chime" });
      Loa.flash(Loa.t("js.processing"), "info");
      try {
        const clip = await Loa.api("POST", compose.getAttribute("action"), { title: f.get("title"), parts: parts });
        window.location.href = "/clips/" + clip.id;
      } catch (err) {
        Loa.failed(err);
      }
    });
  }

  const canvas = document.getElementById("waveform");
  const peaksData = document.getElementById("waveform-peaks");
  if (canvas && peaksData) {
    const peaks = JSON.parse(peaksData.textContent || "[]");
    const audio = document.getElementById("clip-audio");
    const draw = function () {
      const ctx = canvas.getContext("2d");
      const w = canvas.width;
      const h = canvas.height;
      const mid = h / 2;
      ctx.clearRect(0, 0, w, h);
      const played = audio && audio.duration ? audio.currentTime / audio.duration : 0;
      const step = w / Math.max(peaks.length, 1);
      peaks.forEach(function (pair, i) {
        const x = i * step;
        ctx.fillStyle = i / peaks.length < played ? "#b3261e" : "#1d5c8f";
        const top = mid - pair[1] * mid;
        const bottom = mid - pair[0] * mid;
        ctx.fillRect(x, top, Math.max(step - 0.3, 0.7), Math.max(bottom - top, 1));
      });
    };
    draw();
    if (audio) audio.addEventListener("timeupdate", draw);
  }
})();
