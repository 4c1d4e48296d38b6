// The chat page: one WebSocket per tab, JSON events, reconnection with backoff.
// Plain JavaScript, no build step. Text from the network is only ever set
// with textContent, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const LOG_LIMIT = 500;
  const CLOSE_REASONS = {
    1001: "The server is restarting",
    1003: "The server refused a message",
    1008: "Disconnected by the server",
    1009: "A message was too large",
    1011: "The server had a problem",
    1013: "You fell behind the conversation",
  };

  const state = {
    ws: null,
    attempt: 0, // reconnection attempts since the last successful hello
    why: "", // why the last working connection ended
    timer: null,
    nick: localStorage.getItem("chat.nick") || "",
    wanted: decodeURIComponent(location.hash.slice(1)) || "", // room to (re)join
    room: null, // room joined, per the server
    members: new Map(), // folded nick -> nick
    rooms: new Map(), // name -> count
    client: tabId(),
  };

  // A random id per tab, kept across reconnections (and reloads of the tab),
  // so that the server gives our nickname back to us at once after a drop.
  function tabId() {
    let id = sessionStorage.getItem("chat.client");
    if (!id) {
      const bytes = crypto.getRandomValues(new Uint8Array(12));
      id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      sessionStorage.setItem("chat.client", id);
    }
    return id;
  }

  function setStatus(kind, text) {
    const el = $("status");
    el.dataset.state = kind;
    el.textContent = text;
    $("retry").hidden = kind !== "reconnecting";
  }

  let errorTimer = null;
  function showError(text) {
    const el = $("error");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  function send(event) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(event));
      return true;
    }
    return false;
  }

  // -- connection ------------------------------------------------------------

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    setStatus("connecting", state.attempt ? "Reconnecting…" : "Connecting…");
    const url = new URL("ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    const ws = new WebSocket(url);
    state.ws = ws;
    ws.onmessage = (e) => {
      let event;
      try {
        event = JSON.parse(e.data);
      } catch {
        return;
      }
      const handler = handlers[event.type];
      if (handler) handler(event);
    };
    ws.onclose = (e) => {
      if (state.ws !== ws) return;
      state.ws = null;
      setJoined(null);
      scheduleReconnect(e);
    };
  }

  // Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... at most 15 s, so that
  // a restarted server is not hit by every tab at the same instant.
  function scheduleReconnect(closeEvent) {
    const base = Math.min(15000, 500 * 2 ** state.attempt);
    const delay = base * (0.75 + Math.random() * 0.5);
    if (state.attempt === 0) {
      // Why the working connection ended; failed attempts after it (the
      // server is still down) do not change the story.
      const detail = closeEvent.code === 1008 && closeEvent.reason ? ` (${closeEvent.reason})` : "";
      state.why = (CLOSE_REASONS[closeEvent.code] || "Connection lost") + detail;
    }
    state.attempt += 1;
    const until = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setStatus("reconnecting", `${state.why}: reconnecting in ${left} s…`);
      if (Date.now() >= until) {
        connect();
      } else {
        state.timer = setTimeout(tick, Math.min(1000, until - Date.now()));
      }
    };
    tick();
  }

  $("retry").onclick = () => {
    if (!state.ws) connect();
  };

  // -- events from the server ------------------------------------------------

  const handlers = {
    hello(event) {
      state.attempt = 0;
      setStatus("connected", "Connected");
      state.rooms = new Map(event.rooms.map((r) => [r.name, r.count]));
      renderRooms();
      if (state.nick && state.wanted) join(state.wanted);
    },
    joined(event) {
      setJoined(event.room);
      state.members = new Map(event.members.map((n) => [n.toLowerCase(), n]));
      renderMembers();
      $("log").replaceChildren();
      event.history.forEach(addMessage);
      addNotice(`You joined #${event.room} as ${event.nick}`);
      $("text").focus();
    },
    message(event) {
      if (event.room === state.room) addMessage(event);
    },
    presence(event) {
      if (event.room !== state.room) return;
      const key = event.nick.toLowerCase();
      if (event.action === "join") {
        state.members.set(key, event.nick);
        addNotice(`${event.nick} joined`);
      } else {
        state.members.delete(key);
        addNotice(`${event.nick} left`);
      }
      renderMembers();
    },
    room(event) {
      if (event.count > 0) state.rooms.set(event.name, event.count);
      else state.rooms.delete(event.name);
      renderRooms();
    },
    left() {
      setJoined(null);
    },
    error(event) {
      showError(event.message);
      if (event.code === "nick_taken" || event.code === "bad_nick") {
        state.wanted = "";
        $("nick").focus();
      } else if (event.code === "not_in_room") {
        setJoined(null);
      }
    },
  };

  // -- rendering -------------------------------------------------------------

  function setJoined(room) {
    state.room = room;
    const inRoom = room !== null;
    $("text").disabled = !inRoom;
    $("send").disabled = !inRoom;
    $("text").placeholder = inRoom ? `Message #${room}` : "Join a room to talk";
    $("room-title").textContent = inRoom ? `#${room}` : "Pick a nickname and a room";
    if (!inRoom) {
      state.members = new Map();
      renderMembers();
    }
  }

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }

  function append(item) {
    const log = $("log");
    const stick = atBottom(log);
    log.append(item);
    while (log.childElementCount > LOG_LIMIT) log.firstElementChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function addMessage(event) {
    const item = document.createElement("li");
    item.className = "message";
    if (event.nick.toLowerCase() === state.nick.toLowerCase()) item.classList.add("mine");
    const time = document.createElement("time");
    const when = new Date(event.ts);
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const nick = document.createElement("b");
    nick.className = "nick";
    nick.textContent = event.nick;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = event.text;
    item.append(time, nick, text);
    append(item);
  }

  function addNotice(text) {
    const item = document.createElement("li");
    item.className = "notice";
    item.textContent = text;
    append(item);
  }

  function renderMembers() {
    const names = [...state.members.values()].sort((a, b) =>
      a.localeCompare(b, undefined, { sensitivity: "base" }));
    $("members").replaceChildren(...names.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      return li;
    }));
    $("count").textContent = state.room ? `(${names.length})` : "";
  }

  function renderRooms() {
    const list = [...state.rooms].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    if (!list.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "No one is here yet: name a room to open it.";
      $("rooms").replaceChildren(li);
      return;
    }
    $("rooms").replaceChildren(...list.map(([name, count]) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.room = name;
      button.textContent = `#${name}`;
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = count;
      button.append(badge);
      if (name === state.room) li.className = "current";
      button.onclick = () => {
        $("room").value = name;
        $("join-form").requestSubmit();
      };
      li.append(button);
      return li;
    }));
  }

  // -- user actions ----------------------------------------------------------

  function join(room) {
    state.wanted = room;
    history.replaceState(null, "", `#${encodeURIComponent(room)}`);
    send({ type: "join", room, nick: state.nick, client: state.client });
  }

  $("join-form").onsubmit = (e) => {
    e.preventDefault();
    const nick = $("nick").value.trim();
    const room = $("room").value.trim().toLowerCase();
    if (!nick || !room) return;
    state.nick = nick;
    localStorage.setItem("chat.nick", nick);
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      state.wanted = room; // joined as soon as the connection is back
      showError("Not connected: you will join when the connection is back.");
      return;
    }
    join(room);
  };

  $("say-form").onsubmit = (e) => {
    e.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (text && send({ type: "say", text })) input.value = "";
  };

  $("nick").value = state.nick;
  $("room").value = state.wanted;
  connect();
})();
