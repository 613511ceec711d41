/**
 * Makes untrusted text inert for a terminal: every C0 and C1 control character
 * (ESC, CR, backspace, newline, ...) and DEL is shown in caret notation, so no
 * received nick or message can move the cursor, clear the screen, set a title
 * or start a fake line. Tab is kept.
 */
export function inert(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g, caret);
}

function caret(ch: string): string {
  const code = ch.charCodeAt(0);
  if (code < 0x20) return `^${String.fromCharCode(code + 0x40)}`;
  if (code === 0x7f) return '^?';
  return `\\x${code.toString(16)}`;
}
