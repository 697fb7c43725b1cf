// The one WebSocket client of every page (annotation, video status, models): one reconnect policy.
//
// A lost socket is opened again after 0.5, 1, 2, 4, 8, 10, 10 ... s, each ±20 % so that the pages a
// server restart dropped do not all come back in the same instant; the delays start over once the
// server has sent a message (a server that accepts and fails at once keeps backing off). A close
// code saying the server refused us (4401 signed out, 4403 no access, 4404 gone) ends it: trying
// again would not help. The state becomes "closed" with the reason in words, which the page shows
// (by default as an alert at the top of the page).

export type SocketState = "connecting" | "open" | "reconnecting" | "closed";

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];

/** Close codes that end the socket for good, and what they tell the person. */
export const REFUSALS: Record<number, string> = {
  4401: "You are signed out. Sign in again, then reload this page.",
  4403: "You do not have access to this project any more, so this page no longer updates.",
  4404: "This is no longer available, so this page no longer updates.",
};

export interface SocketEvents {
  /** Every message, parsed from JSON (a frame that is not JSON is dropped). */
  message(data: unknown): void;
  /** The state changed; `detail` says when the next attempt is, or (closed) why there is none. */
  state?(state: SocketState, detail: string): void;
}

export interface SocketOptions {
  /** Words for refusal codes, instead of the general ones in `REFUSALS`. */
  refusals?: Record<number, string>;
  /** Show a refusal as an alert at the top of the page (false: the page shows it itself). */
  announce?: boolean;
}

/** `path` on this page's host, over wss: when the page is https:. */
export function socketUrl(path: string): string {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}

export class ReconnectingSocket {
  private socket: WebSocket | null = null;
  private attempt = 0;
  private opened = false;
  state: SocketState = "connecting";

  /** `path` is read again for every attempt (the annotation page adds the model version it keeps). */
  constructor(private readonly path: () => string, private readonly events: SocketEvents,
              private readonly options: SocketOptions = {}) {}

  open(): void {
    if (!("WebSocket" in window)) {
      this.setState("closed", "This browser cannot open a live connection.");
      return;
    }
    const socket = new WebSocket(socketUrl(this.path()));
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.opened = true;
      this.setState("open", "");
    });
    socket.addEventListener("message", (event) => {
      let data: unknown;
      try {
        data = JSON.parse(String(event.data));
      } catch {
        return;
      }
      this.attempt = 0;
      this.events.message(data);
    });
    socket.addEventListener("close", (event) => this.closed(socket, event.code));
  }

  /** Send one message as JSON; returns whether it went out (false while not open). */
  send(message: unknown): boolean {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  get isOpen(): boolean {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  private closed(socket: WebSocket, code: number): void {
    if (socket !== this.socket) return;
    this.socket = null;
    const refusal = this.options.refusals?.[code] ?? REFUSALS[code];
    if (refusal) {
      if (this.options.announce !== false) announce(refusal);
      this.setState("closed", refusal);
      return;
    }
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.setState(this.opened || this.attempt > 1 ? "reconnecting" : "connecting",
      `retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    window.setTimeout(() => this.open(), delay);
  }

  private setState(state: SocketState, detail: string): void {
    this.state = state;
    this.events.state?.(state, detail);
  }
}

/** The page-wide alert a refused socket leaves: the same place and look as the server's messages. */
function announce(text: string): void {
  let item = document.getElementById("socket-refused");
  if (!item) {
    const list = document.createElement("ul");
    list.className = "messages";
    item = document.createElement("li");
    item.id = "socket-refused";
    item.className = "message error";
    item.setAttribute("role", "alert");
    list.append(item);
    (document.querySelector("main") ?? document.body).prepend(list);
  }
  item.textContent = text;
}
