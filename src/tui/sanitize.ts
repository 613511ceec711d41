/**
 * Makes untrusted text inert for a terminal: every C0 and C1 control character
 * (ESC, CR, backspace, newline, ...) and DEL is shown in caret notation, so no
 * received nick or message can move the cursor, clear the screen, set a title
 * or start a fake line. Tab is kept. The Unicode text-direction controls
 * (marks, embeddings, overrides, isolates) are shown by name, as `<U+202E>`.
 */
export function inert(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, caret);
}

function caret(ch: string): string {
  const code = ch.charCodeAt(0);
  // Text-direction controls: on a terminal that lays out bidirectional text,
  // one reverses how the rest of the line reads. Named, not applied.
  if (code > 0x9f) return `<U+${code.toString(16).toUpperCase().padStart(4, '0')}>`;
  if (code < 0x20) return `^${String.fromCharCode(code + 0x40)}`;
  if (code === 0x7f) return '^?';
  return `\\x${code.toString(16)}`;
}
