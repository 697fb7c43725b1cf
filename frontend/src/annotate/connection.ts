// The page's one WebSocket: request/reply by id, reconnect with backoff, keep-alive pings.
//
// States: "connecting" (first attempt), "connected" (hello received), "reconnecting" (lost,
// retrying after 0.5, 1, 2, 4, 8, 10, 10 ... s) and "closed" (the server refused us: no
// access, or the video is gone; retrying would not help).
//
// A page keeps the model version it started with: once a hello has named it (`modelVersion`),
// every reconnect asks for it with `?model_version=<id>` (`none`: the settings' model), and the
// server keeps it unless it can no longer serve it (then hello names another and error
// `model_changed` follows).

import { PROTOCOL_VERSION, type Hello, type ServerMessage } from "./protocol";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

type Reply = ServerMessage;
interface Pending {
  resolve: (message: Reply) => void;
}

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];
const REFUSED_CODES: Record<number, string> = {
  4403: "You do not have access to this video any more.",
  4404: "This video is not available for annotation.",
};

export interface ConnectionEvents {
  state(state: ConnectionState, detail: string): void;
  hello(hello: Hello, reconnected: boolean): void;
  message(message: ServerMessage): void;
}

export class Connection {
  private socket: WebSocket | null = null;
  private attempt = 0;
  private nextId = 1;
  private pending = new Map<string, Pending>();
  private pingTimer: number | null = null;
  private everConnected = false;
  state: ConnectionState = "connecting";
  /** The model version to ask for on reconnect (null: the settings' model); undefined until a hello named one. */
  modelVersion: number | null | undefined = undefined;

  constructor(private readonly path: string, private readonly events: ConnectionEvents) {}

  open(): void {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const pin = this.modelVersion === undefined ? ""
      : `${this.path.includes("?") ? "&" : "?"}model_version=${this.modelVersion ?? "none"}`;
    const socket = new WebSocket(`${scheme}//${location.host}${this.path}${pin}`);
    this.socket = socket;
    socket.addEventListener("message", (event) => this.receive(String(event.data)));
    socket.addEventListener("close", (event) => this.closed(socket, event.code));
  }

  /** A fresh message id, for a caller that must recognise later messages about its request (a track). */
  newId(): string {
    return `c${this.nextId++}`;
  }

  /** Send a message; resolves with the server's first reply to it (`re` = its id), errors included.
   *  Later messages carrying the same `re` (a track's error after `track_started`) reach `message` only. */
  request(type: string, fields: Record<string, unknown> = {}, id: string = this.newId()): Promise<Reply> {
    return new Promise((resolve) => {
      if (!this.send({ ...fields, type, id })) {
        resolve({ type: "error", code: "offline", error: "Not connected: the edit was not sent. It will be possible again once the page reconnects." });
        return;
      }
      this.pending.set(id, { resolve });
    });
  }

  /** Fire and forget (ping, cancel). Returns whether it went out. */
  send(message: Record<string, unknown>): boolean {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN || this.state !== "connected") return false;
    this.socket.send(JSON.stringify({ v: PROTOCOL_VERSION, ...message }));
    return true;
  }

  /** Keep locks alive: ping every `seconds` while connected. */
  keepAlive(seconds: number): void {
    if (this.pingTimer !== null) window.clearInterval(this.pingTimer);
    this.pingTimer = window.setInterval(() => this.send({ type: "ping" }), Math.max(5, seconds) * 1000);
  }

  private receive(text: string): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(text) as ServerMessage;
    } catch {
      return;
    }
    if (message.type === "hello") {
      const reconnected = this.everConnected;
      this.everConnected = true;
      this.attempt = 0;
      this.modelVersion = message.model_version;
      this.setState("connected", "");
      this.events.hello(message, reconnected);
      return;
    }
    // The page's version could not be kept: the server now uses this one, and so will a reconnect.
    if (message.type === "worker" && message.model_version !== undefined) this.modelVersion = message.model_version;
    if (message.re !== undefined && message.re !== null) {
      const pending = this.pending.get(String(message.re));
      if (pending) {
        this.pending.delete(String(message.re));
        pending.resolve(message);
      }
    }
    this.events.message(message);
  }

  private closed(socket: WebSocket, code: number): void {
    if (socket !== this.socket) return;
    this.socket = null;
    for (const pending of this.pending.values()) {
      pending.resolve({ type: "error", code: "offline", error: "The connection was lost before the server answered; the page is reconnecting." });
    }
    this.pending.clear();
    if (REFUSED_CODES[code]) {
      this.setState("closed", REFUSED_CODES[code]);
      return;
    }
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.setState(this.everConnected || this.attempt > 1 ? "reconnecting" : "connecting",
      `retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    window.setTimeout(() => this.open(), delay);
  }

  private setState(state: ConnectionState, detail: string): void {
    this.state = state;
    this.events.state(state, detail);
  }
}
