// The board page: ticks the clock, swaps in the server-rendered /board on each change.
// No framework, no CDN: the page must work on a Pi with no Internet.
"use strict";
(function () {
  const TZ = "Asia/Ho_Chi_Minh";
  const clock = document.getElementById("clock");
  const date = document.getElementById("date");
  const board = document.getElementById("board");
  const timeFmt = new Intl.DateTimeFormat("vi-VN", {
    timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  const dateFmt = new Intl.DateTimeFormat("vi-VN", {
    timeZone: TZ, weekday: "long", day: "numeric", month: "numeric", year: "numeric",
  });
  // server time - this browser's time (the agent's clock is synchronised with the server).
  let offsetMs = Number(clock.dataset.serverTime) * 1000 - Date.now();

  function tick() {
    const now = new Date(Date.now() + offsetMs);
    clock.textContent = timeFmt.format(now);
    date.textContent = dateFmt.format(now);
  }

  let fetching = null;
  let again = false;
  async function swap() {
    if (fetching) { again = true; return; }
    fetching = fetch("/board", { cache: "no-store" });
    try {
      const response = await fetching;
      if (response.ok) {
        board.innerHTML = await response.text(); // rendered and escaped by the agent
      }
    } catch (err) {
      // the agent is restarting: the event stream reconnects and swaps again
    } finally {
      fetching = null;
      if (again) { again = false; swap(); }
    }
  }

  let source = null;
  function connect() {
    source = new EventSource("/events");
    source.addEventListener("board", function (event) {
      try {
        const state = JSON.parse(event.data);
        offsetMs = state.server_time * 1000 - Date.now();
      } catch (err) { /* keep the previous offset */ }
      swap();
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, 2000);
      }
    };
  }

  tick();
  setInterval(tick, 1000);
  connect();
})();
