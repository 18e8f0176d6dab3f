// The demo page: joins a room of partyd's built-in "demo" party with the
// partysocket client and shows its chat, who is here and their pointers.
// Protocol (JSON text messages), server to page: welcome {id, history,
// present}, join {id, name}, leave {id}, chat {message}, cursor {id, x, y},
// error {message}; page to server: join {name}, chat {text}, cursor {x, y}.
import PartySocket from 'partysocket';

const params = new URLSearchParams(location.search);
const room = params.get('room') || 'lobby';
const $ = (id) => document.getElementById(id);

function initialName() {
  const given = params.get('name') || localStorage.getItem('partyd-demo-name');
  return given || `guest-${Math.random().toString(36).slice(2, 6)}`;
}

let myName = initialName();
let myId = null;
const people = new Map(); // connection id -> name
const cursors = new Map(); // connection id -> element

$('room-name').textContent = room;
$('name').value = myName;
document.title = `${room} · partyd demo`;

const socket = new PartySocket({
  host: location.host,
  protocol: location.protocol === 'https:' ? 'wss' : 'ws',
  party: 'demo',
  room,
});

function send(msg) {
  socket.send(JSON.stringify(msg));
}

function setStatus(text) {
  $('status').textContent = text;
}

// A stable colour per connection, so a pointer and its name match.
function colorOf(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.codePointAt(0)) % 360;
  return `hsl(${h} 70% 38%)`;
}

function renderPeople() {
  const list = $('people');
  list.replaceChildren();
  const sorted = [...people].sort((a, b) => a[1].localeCompare(b[1]));
  for (const [id, name] of sorted) {
    const li = document.createElement('li');
    li.textContent = name;
    li.style.color = colorOf(id);
    if (id === myId) li.className = 'me';
    list.append(li);
  }
  $('people-count').textContent = String(people.size);
}

function addMessage(m) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  const when = new Date(m.at);
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = `${m.name}: `;
  who.style.color = colorOf(m.id);
  li.append(time, who, document.createTextNode(m.text));
  const list = $('messages');
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function moveCursor(id, x, y) {
  let el = cursors.get(id);
  if (x === undefined || y === undefined) {
    el?.remove();
    cursors.delete(id);
    return;
  }
  if (!el) {
    el = document.createElement('div');
    el.className = 'cursor';
    el.style.setProperty('--color', colorOf(id));
    el.append(document.createElement('span'));
    $('cursors').append(el);
    cursors.set(id, el);
  }
  el.dataset.id = id;
  el.lastChild.textContent = people.get(id) ?? '…';
  el.style.left = `${x * 100}%`;
  el.style.top = `${y * 100}%`;
}

socket.addEventListener('open', () => {
  setStatus('connected');
  send({ type: 'join', name: myName });
});

socket.addEventListener('close', () => {
  setStatus('disconnected, reconnecting…');
  people.clear();
  renderPeople();
  for (const id of [...cursors.keys()]) moveCursor(id);
});

socket.addEventListener('message', (event) => {
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch {
    return;
  }
  switch (msg.type) {
    case 'welcome':
      myId = msg.id;
      $('messages').replaceChildren();
      msg.history.forEach(addMessage);
      people.clear();
      for (const p of msg.present) people.set(p.id, p.name);
      renderPeople();
      break;
    case 'join':
      people.set(msg.id, msg.name);
      renderPeople();
      break;
    case 'leave':
      people.delete(msg.id);
      moveCursor(msg.id);
      renderPeople();
      break;
    case 'chat':
      addMessage(msg.message);
      break;
    case 'cursor':
      moveCursor(msg.id, msg.x, msg.y);
      break;
    case 'error':
      setStatus(`error: ${msg.message}`);
      break;
  }
});

$('send-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('text');
  const text = input.value.trim();
  if (text === '') return;
  send({ type: 'chat', text });
  input.value = '';
});

$('name-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('name').value.trim();
  if (name === '') return;
  myName = name;
  localStorage.setItem('partyd-demo-name', name);
  send({ type: 'join', name });
});

// Pointer positions as fractions of the window, at most 20 a second.
let pending = null;
let timer = null;
function flushCursor() {
  timer = null;
  if (pending && socket.readyState === WebSocket.OPEN) send(pending);
  pending = null;
}
document.addEventListener('pointermove', (event) => {
  pending = { type: 'cursor', x: event.clientX / innerWidth, y: event.clientY / innerHeight };
  timer ??= setTimeout(flushCursor, 50);
});
document.documentElement.addEventListener('pointerleave', () => {
  pending = { type: 'cursor' };
  timer ??= setTimeout(flushCursor, 50);
});
