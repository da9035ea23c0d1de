// What a run's events say, folded into a model the run page draws: steps in order, each with its
// attempts (status, streamed output, input, tokens, cost, tool calls, error) and the pending
// client-tool pause. Pure: no DOM, no network.

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

export class RunModel {
  constructor() {
    this.steps = new Map(); // stepId -> {id, name, index, type, attempts: Map}
    this.events = [];
    this.status = null;
    this.pause = null; // the pending step_paused_for_tool_calls payload
    this.result = undefined;
    this.error = null;
    this.stepCount = null;
    this.lastSeq = 0;
  }

  step(event) {
    let step = this.steps.get(event.stepId);
    if (!step) {
      step = { id: event.stepId, name: event.name ?? null, index: event.stepIndex, type: event.type ?? null, attempts: new Map() };
      this.steps.set(event.stepId, step);
    }
    if (event.name) step.name = event.name;
    if (event.type) step.type = event.type;
    return step;
  }

  attempt(event) {
    const step = this.step(event);
    const n = event.attempt ?? (step.attempts.size ? Math.max(...step.attempts.keys()) : 1);
    let attempt = step.attempts.get(n);
    if (!attempt) {
      attempt = { attempt: n, status: "running", output: "", input: null, tokens: null, costUsd: null, durationMs: null, model: null, error: null, tools: new Map(), reasoning: "" };
      step.attempts.set(n, attempt);
    }
    return attempt;
  }

  /** Fold one event in; returns true when the run's state (not just a step's) changed. */
  apply(event) {
    this.events.push(event);
    this.lastSeq = Math.max(this.lastSeq, event.seq ?? 0);
    switch (event.eventType) {
      case "run_started":
        this.status = "running";
        this.stepCount = event.stepCount;
        return true;
      case "step_started":
        this.attempt(event).status = "running";
        if (this.status !== "running") {
          this.status = "running";
          return true;
        }
        return false;
      case "step_input": {
        this.attempt(event).input = event.inputData;
        return false;
      }
      case "step_output": {
        const a = this.attempt(event);
        a.output += typeof event.outputData === "string" ? event.outputData : JSON.stringify(event.outputData);
        return false;
      }
      case "step_reasoning":
        this.attempt(event).reasoning += event.delta;
        return false;
      case "step_completed": {
        const a = this.attempt(event);
        a.status = event.skipped ? "skipped" : "completed";
        a.final = event.output;
        a.tokens = event.tokens;
        a.costUsd = event.costUsd;
        a.durationMs = event.durationMs;
        a.model = event.model ?? a.model;
        if (this.pause?.stepId === event.stepId) this.pause = null;
        return false;
      }
      case "step_error":
      case "step_retrying": {
        const a = this.attempt(event);
        a.status = event.eventType === "step_error" ? "failed" : "retried";
        a.error = event.error;
        a.durationMs = event.durationMs ?? a.durationMs;
        return false;
      }
      case "step_paused":
        this.status = "waiting";
        return true;
      case "step_paused_for_tool_calls":
        this.status = "waiting";
        this.pause = event;
        this.attempt(event).status = "waiting";
        return true;
      case "tool_call_started": {
        const a = this.attempt(event);
        a.tools.set(event.toolCallId, { id: event.toolCallId, name: event.name, arguments: event.arguments, side: event.side, result: null, error: null, durationMs: null });
        return false;
      }
      case "tool_call_completed": {
        const a = this.attempt(event);
        const call = a.tools.get(event.toolCallId) ?? { id: event.toolCallId, name: event.name, side: event.side, arguments: null };
        Object.assign(call, { result: event.result ?? null, error: event.error ?? null, durationMs: event.durationMs ?? null });
        a.tools.set(event.toolCallId, call);
        if (event.side === "client" && a.status === "waiting") a.status = "running";
        if (this.pause && this.pause.toolCalls.every((c) => a.tools.get(c.id)?.result != null || a.tools.get(c.id)?.error != null)) {
          this.pause = null;
          this.status = "running";
          return true;
        }
        return false;
      }
      case "flow_completed":
        this.status = "completed";
        this.result = event.result;
        this.pause = null;
        return true;
      case "run_failed":
        this.status = "failed";
        this.error = event.error;
        this.pause = null;
        return true;
      case "run_cancelled":
        this.status = "cancelled";
        this.pause = null;
        return true;
      default:
        return false;
    }
  }

  /** Steps in flow order. */
  ordered() {
    return [...this.steps.values()].sort((a, b) => a.index - b.index);
  }

  /** How long an attempt waited for the caller's tool results (the client calls' durations). */
  static waitMs(attempt) {
    let total = 0;
    for (const call of attempt.tools.values()) if (call.side === "client" && call.durationMs) total += call.durationMs;
    return total;
  }
}
