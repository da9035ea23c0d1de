// A sans-I/O parser of text/event-stream (the HTML standard's algorithm, LF/CRLF/CR line ends):
// feed it text as it arrives, get whole events back. EventSource cannot send an Authorization
// header, so the console reads the stream with fetch() and parses it here.

export class SseParser {
  constructor() {
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.id = null;
    this.afterCR = false;
  }

  /** Feed a chunk of text; returns the events it completes: {id, event, data}. */
  feed(text) {
    // A CR that ended the last chunk may be the first half of a CRLF: its LF ends nothing.
    if (this.afterCR && text.startsWith("\n")) text = text.slice(1);
    this.afterCR = false;
    this.buffer += text;
    const out = [];
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer.slice(start));
      if (!match) break;
      const end = start + match.index;
      this.line(this.buffer.slice(start, end), out);
      start = end + match[0].length;
      if (match[0] === "\r" && start === this.buffer.length) this.afterCR = true;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  line(line, out) {
    if (line === "") {
      if (this.data.length) out.push({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) return; // a comment: heartbeats
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }
}
