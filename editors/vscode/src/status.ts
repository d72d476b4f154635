// The status-bar item's text, from the server's `dgls/status` notification or the
// `dgls.status` command (dgls/service.py Status.as_dict).

export interface ServerStatus {
  model: string | null;
  state: string; // starting | loading | ready | unavailable | no model
  device: string | null;
  worker_pid: number | null;
  last_latency_ms: number | null;
  served: number;
  cache_hits: number;
  message: string | null;
}

export interface StatusView {
  text: string;
  tooltip: string;
  problem: boolean;
}

export function statusView(status: ServerStatus | undefined, enabled: boolean, startError?: string): StatusView {
  if (!enabled) {
    return { text: "$(circle-slash) dgls", tooltip: "dgls is off (dgls: Toggle inline suggestions)", problem: false };
  }
  if (startError !== undefined) {
    return { text: "$(error) dgls", tooltip: `dgls could not start: ${startError}`, problem: true };
  }
  if (status === undefined) {
    return { text: "$(loading~spin) dgls", tooltip: "dgls: starting the server", problem: false };
  }
  const lines = [
    `model: ${status.model ?? "(not chosen yet)"}`,
    `state: ${status.state}${status.device ? ` on ${status.device}` : ""}`,
    `suggestions: ${status.served}, cache hits: ${status.cache_hits}`,
  ];
  if (status.message) {
    lines.push(status.message);
  }
  const tooltip = lines.join("\n");
  switch (status.state) {
    case "ready":
      return {
        text: status.last_latency_ms === null ? "$(sparkle) dgls" : `$(sparkle) dgls ${Math.round(status.last_latency_ms)} ms`,
        tooltip,
        problem: false,
      };
    case "starting":
    case "loading":
      return { text: `$(loading~spin) dgls ${status.state}`, tooltip, problem: false };
    case "no model":
      return { text: "$(warning) dgls: no model", tooltip: `${tooltip}\nset dgls.model`, problem: true };
    default:
      return { text: `$(error) dgls ${status.state}`, tooltip, problem: true };
  }
}
