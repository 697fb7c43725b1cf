// The annotation page's socket: request/reply by id and keep-alive pings, over the one WebSocket
// client (../socket.ts: reconnect with backoff, stop when refused).
//
// States: "connecting" (first attempt), "connected" (hello received), "reconnecting" (lost,
// retrying) and "closed" (the server refused us: no access, or the video is gone).
//
// A page keeps the model version it started with: once a hello has named it (`modelVersion`),
// every reconnect asks for it with `?model_version=<id>` (`none`: the settings' model), and the
// server keeps it unless it can no longer serve it (then hello names another and error
// `model_changed` follows).

import type { ClientMessage, Hello, ServerMessage } from "../generated/protocol";
import { ReconnectingSocket, type SocketState } from "../socket";
import { PROTOCOL_VERSION } from "./protocol";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

/** A reply: the server's, or the page's own "offline" error when the message could not be answered. */
type Reply = ServerMessage | { type: "error"; code: "offline"; error: string; re?: string };
interface Pending {
  resolve: (message: Reply) => void;
}

const REFUSALS: Record<number, string> = {
  4403: "You do not have access to this video any more.",
  4404: "This video is not available for annotation.",
};

/** A client message as the page writes it: `v` and `id` are added when it is sent. */
export type Outgoing = ClientMessage extends infer M ? M extends ClientMessage ? Omit<M, "v" | "id"> : never : never;

export interface ConnectionEvents {
  state(state: ConnectionState, detail: string): void;
  hello(hello: Hello, reconnected: boolean): void;
  message(message: ServerMessage): void;
}

export class Connection {
  private readonly socket: ReconnectingSocket;
  private nextId = 1;
  private pending = new Map<string, Pending>();
  private pingTimer: number | null = null;
  private everConnected = false;
  state: ConnectionState = "connecting";
  /** The model version to ask for on reconnect (null: the settings' model); undefined until a hello named one. */
  modelVersion: number | null | undefined = undefined;

  constructor(path: string, private readonly events: ConnectionEvents) {
    this.socket = new ReconnectingSocket(() => {
      if (this.modelVersion === undefined) return path;
      return `${path}${path.includes("?") ? "&" : "?"}model_version=${this.modelVersion ?? "none"}`;
    }, {
      message: (data) => this.receive(data as ServerMessage),
      state: (state, detail) => this.socketState(state, detail),
    }, { refusals: REFUSALS, announce: false });
  }

  open(): void {
    this.socket.open();
  }

  /** A fresh message id, for a caller that must recognise later messages about its request (a track). */
  newId(): string {
    return `c${this.nextId++}`;
  }

  /** Send a message; resolves with the server's first reply to it (`re` = its id), errors included.
   *  Later messages carrying the same `re` (a track's error after `track_started`) reach `message` only. */
  request(message: Outgoing, id: string = this.newId()): Promise<Reply> {
    return new Promise((resolve) => {
      if (!this.send(message, id)) {
        resolve({ type: "error", code: "offline", error: "Not connected: the edit was not sent. It will be possible again once the page reconnects." });
        return;
      }
      this.pending.set(id, { resolve });
    });
  }

  /** Fire and forget (ping, cancel). Returns whether it went out. */
  send(message: Outgoing, id?: string): boolean {
    if (this.state !== "connected") return false;
    return this.socket.send({ v: PROTOCOL_VERSION, ...message, ...(id === undefined ? {} : { id }) });
  }

  /** Keep locks alive: ping every `seconds` while connected. */
  keepAlive(seconds: number): void {
    if (this.pingTimer !== null) window.clearInterval(this.pingTimer);
    this.pingTimer = window.setInterval(() => this.send({ type: "ping" }), Math.max(5, seconds) * 1000);
  }

  private receive(message: ServerMessage): void {
    if (message.type === "hello") {
      const reconnected = this.everConnected;
      this.everConnected = true;
      this.modelVersion = message.model_version;
      this.setState("connected", "");
      this.events.hello(message, reconnected);
      return;
    }
    // The page's version could not be kept: the server now uses this one, and so will a reconnect.
    if (message.type === "worker" && message.model_version !== undefined) this.modelVersion = message.model_version;
    if (message.re !== undefined) {
      const pending = this.pending.get(String(message.re));
      if (pending) {
        this.pending.delete(String(message.re));
        pending.resolve(message);
      }
    }
    this.events.message(message);
  }

  private socketState(state: SocketState, detail: string): void {
    if (state === "open") return; // connected once hello arrives
    for (const pending of this.pending.values()) {
      pending.resolve({ type: "error", code: "offline", error: "The connection was lost before the server answered; the page is reconnecting." });
    }
    this.pending.clear();
    this.setState(state, detail);
  }

  private setState(state: ConnectionState, detail: string): void {
    this.state = state;
    this.events.state(state, detail);
  }
}
