// Shared by the page scripts: the video JSON shape and small helpers.

import type { VideoRow, VideoStatusMessage } from "./generated/protocol";

/** A video as the project page lists it (the video-status socket and the HTTP API send the same shape). */
export type VideoJSON = VideoRow;
export type VideoStatus = VideoRow["status"];

/** Every error of the HTTP API (``engine.input.error_response``). */
export interface ApiError {
  error?: { code: string; message: string; field: string | null };
}

export type StatusMessage = VideoStatusMessage;

export function isFinal(status: VideoStatus): boolean {
  return status === "ready" || status === "failed";
}

export function percent(fraction: number): string {
  return `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}\u00a0%`;
}

/** Bytes in the units Django's filesizeformat uses (1 KB = 1024 bytes). */
export function fileSize(bytes: number): string {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(1)}\u00a0${units[unit]}`;
}

/** The CSRF token Django put in the page's form (the cookie may be HttpOnly). */
export function csrfToken(form: HTMLFormElement): string {
  const input = form.querySelector<HTMLInputElement>("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

export function required<T extends Element>(selector: string, root: ParentNode = document): T {
  const element = root.querySelector<T>(selector);
  if (!element) throw new Error(`missing element ${selector}`);
  return element;
}

/** The one date format, ISO-like in the reader's time zone: `2026-12-04 19:05`; "" for a bad value. */
export function formatWhen(iso: string | null | undefined): string {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
