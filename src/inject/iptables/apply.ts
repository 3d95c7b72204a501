// Applies and removes a RuleSet in the current network namespace: one iptables-restore
// transaction each way (nothing half-applied), and `clean` removes exactly what `apply` added
// (jumps, chains, the route, and a table that did not exist before), read back from
// iptables-save, so the rule set is as it was.
import { spawnSync } from 'node:child_process';
import { CHAIN_PREFIX, CREATED_TABLE_MARKER, INBOUND_ROUTE, restoreText } from './rules.ts';
import type { RuleSet } from './rules.ts';
import { INBOUND_CAPTURE_NET } from './capture-addresses.ts';

/** A command's outcome. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** How commands run (a seam for tests; the default spawns them). */
export type CommandRunner = (command: string, args: readonly string[], input?: string) => CommandResult;

export const spawnRunner: CommandRunner = (command, args, input) => {
  const r = spawnSync(command, args, { input, encoding: 'utf8' });
  if (r.error) return { code: 127, stdout: '', stderr: `${command}: ${r.error.message}` };
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
};

/** The binaries used; `iptables-restore`/`iptables-save` follow the system's choice of backend. */
export interface IptablesTools {
  save: string;
  restore: string;
  ip: string;
  run: CommandRunner;
}

export const DEFAULT_TOOLS: IptablesTools = { save: 'iptables-save', restore: 'iptables-restore', ip: 'ip', run: spawnRunner };

/** A failed step, with the tool's own message. */
export class IptablesApplyError extends Error {
  override name = 'IptablesApplyError';
}

/** iptables-save output split into tables: name → lines between `*name` and `COMMIT`. */
export function parseSave(text: string): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      current = [];
      tables.set(line.slice(1).trim(), current);
    } else if (line === 'COMMIT') {
      current = undefined;
    } else if (current !== undefined && line !== '' && !line.startsWith('#')) {
      current.push(line);
    }
  }
  return tables;
}

/** iptables-save without its timestamp comments: what "the same rule set" compares. */
export function normalizeSave(text: string): string {
  return text.split('\n').filter((l) => !l.startsWith('#')).join('\n');
}

function save(tools: IptablesTools): string {
  const r = tools.run(tools.save, []);
  if (r.code !== 0) throw new IptablesApplyError(`${tools.save} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

function restore(tools: IptablesTools, input: string, noflush: boolean): void {
  const r = tools.run(tools.restore, noflush ? ['--noflush', '--wait'] : ['--wait'], input);
  if (r.code !== 0) throw new IptablesApplyError(`${tools.restore} failed (exit ${r.code}), nothing was changed: ${r.stderr.trim()}`);
}

function routePresent(tools: IptablesTools): boolean {
  const r = tools.run(tools.ip, ['-4', 'route', 'show', 'table', 'local', 'type', 'local', `${INBOUND_CAPTURE_NET}/16`]);
  return r.code === 0 && r.stdout.trim() !== '';
}

/** True when any of this command's chains exist. */
export function isApplied(tools: IptablesTools = DEFAULT_TOOLS): boolean {
  for (const lines of parseSave(save(tools)).values()) if (lines.some((l) => l.startsWith(`:${CHAIN_PREFIX}`))) return true;
  return false;
}

/**
 * Writes the rule set. Rules already written by an earlier run (a restarted init container)
 * are removed first, so the result is the rule set for these options alone.
 */
export function applyRules(rules: RuleSet, tools: IptablesTools = DEFAULT_TOOLS): void {
  if (isApplied(tools)) cleanRules(tools);
  const existing = parseSave(save(tools));
  const marked: RuleSet = { tables: new Map(), routes: rules.routes };
  for (const [table, lines] of rules.tables) {
    // A table the namespace did not have: mark it, so that --clean removes the table too.
    marked.tables.set(table, existing.has(table) ? lines : [`:${CREATED_TABLE_MARKER} - [0:0]`, ...lines]);
  }
  const added: string[][] = [];
  for (const route of rules.routes) {
    if (route === INBOUND_ROUTE && routePresent(tools)) continue;
    const r = tools.run(tools.ip, route);
    if (r.code !== 0) throw new IptablesApplyError(`ip ${route.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
    added.push(route);
  }
  try {
    restore(tools, restoreText(marked, true), true);
  } catch (err) {
    for (const route of added) tools.run(tools.ip, route.map((a) => (a === 'add' ? 'del' : a)));
    throw err;
  }
}

/** Lines of one table that undo this command's rules there: jumps deleted, chains flushed, then deleted. */
function undoLines(lines: readonly string[]): string[] {
  const jumps: string[] = [];
  const chains: string[] = [];
  for (const l of lines) {
    if (l.startsWith(`:${CHAIN_PREFIX}`)) chains.push(l.slice(1).split(' ')[0]!);
    else if (l.startsWith('-A ')) {
      const chain = l.split(' ')[1]!;
      if (!chain.startsWith(CHAIN_PREFIX) && new RegExp(`(^| )-j ${CHAIN_PREFIX}[A-Z_]+( |$)`).test(l)) jumps.push('-D' + l.slice(2));
    }
  }
  return [...jumps, ...chains.map((c) => `-F ${c}`), ...chains.map((c) => `-X ${c}`)];
}

// A table holding nothing but its built-in chains, each empty with policy ACCEPT.
function isEmptyTable(lines: readonly string[]): boolean {
  return lines.every((l) => /^:[A-Z]+ ACCEPT /.test(l));
}

/** What `cleanRules` would do, from an iptables-save text: iptables-restore input, and the tables applyRules created. */
export function planClean(saveText: string): { input: string; created: string[] } {
  let input = '';
  const created: string[] = [];
  for (const [table, lines] of parseSave(saveText)) {
    const undo = undoLines(lines);
    if (undo.length === 0) continue;
    if (lines.includes(`:${CREATED_TABLE_MARKER} - [0:0]`)) created.push(table);
    input += `*${table}\n${undo.join('\n')}\nCOMMIT\n`;
  }
  return { input, created };
}

/** The text `--clean --dry-run` prints: what would be removed, as iptables-restore input, and the route. */
export function cleanPreview(tools: IptablesTools = DEFAULT_TOOLS): string {
  const { input, created } = planClean(save(tools));
  let out = input;
  for (const t of created) out += `# then table ${t}, created by sextant iptables, if nothing else is in it\n`;
  if (routePresent(tools)) out += `# route: ip ${INBOUND_ROUTE.map((a) => (a === 'add' ? 'del' : a)).join(' ')}\n`;
  return out;
}

/**
 * Removes what applyRules wrote, whatever options it was given: every `SEXTANT_*` chain and
 * every jump to one, in one transaction; then each table that applyRules created, when
 * nothing else was put in it since; then the inbound capture route. Returns false when there
 * was nothing to remove.
 */
export function cleanRules(tools: IptablesTools = DEFAULT_TOOLS): boolean {
  const { input, created } = planClean(save(tools));
  const route = routePresent(tools);
  if (input === '' && !route) return false;
  if (input !== '') restore(tools, input, true);
  if (created.length > 0) {
    const after = parseSave(save(tools));
    // Restoring an empty table without --noflush removes it (nf_tables), as it was before apply.
    const empty = created.filter((t) => isEmptyTable(after.get(t) ?? []));
    if (empty.length > 0) restore(tools, empty.map((t) => `*${t}\nCOMMIT\n`).join(''), false);
  }
  if (route) {
    const r = tools.run(tools.ip, INBOUND_ROUTE.map((a) => (a === 'add' ? 'del' : a)));
    if (r.code !== 0) throw new IptablesApplyError(`ip route del failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  return true;
}
