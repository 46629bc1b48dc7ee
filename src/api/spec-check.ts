/**
 * The agent's own check of a job it is given against its kind's JSON Schema
 * (src/api/v1.ts), so that it never acts on what a server that was taken
 * over sends outside the vocabulary, whatever that server validated. It
 * understands the keywords the job schemas use (type, required,
 * additionalProperties: false, properties, items, minItems, maxItems,
 * minLength, maxLength, pattern, enum, minimum, maximum) and refuses a schema with
 * any other, so a schema that grows a keyword cannot pass unchecked here.
 */
import { JOB_KIND_NAMES, JOB_SPEC_SCHEMAS, type JobKindName } from './v1.js';

/** A job the agent will not run: its kind is not in the vocabulary, or its spec does not fit the kind's schema. */
export class JobSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobSpecError';
  }
}

type Schema = Readonly<Record<string, unknown>>;

const KNOWN = new Set(['type', 'required', 'additionalProperties', 'properties', 'items', 'minItems', 'maxItems', 'minLength', 'maxLength', 'pattern', 'enum', 'minimum', 'maximum']);

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  if (Number.isInteger(v)) return 'integer';
  return typeof v;
}

/** The first way `v` does not fit `schema`, as text, or undefined when it fits. */
function mismatch(schema: Schema, v: unknown, at: string): string | undefined {
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`spec-check does not understand the schema keyword "${k}" (${at})`);
  const t = schema['type'] as string | undefined;
  if (t !== undefined && typeOf(v) !== t && !(t === 'number' && typeof v === 'number')) return `${at} must be ${t === 'array' || t === 'object' || t === 'integer' ? 'an' : 'a'} ${t}`;
  const e = schema['enum'] as readonly unknown[] | undefined;
  if (e && !e.includes(v)) return `${at} must be one of ${e.join(', ')}`;
  if (typeof v === 'string') {
    if (schema['minLength'] !== undefined && v.length < (schema['minLength'] as number)) return `${at} is too short`;
    if (schema['maxLength'] !== undefined && v.length > (schema['maxLength'] as number)) return `${at} is too long`;
    if (schema['pattern'] !== undefined && !new RegExp(schema['pattern'] as string, 'u').test(v)) return `${at} must match pattern "${schema['pattern'] as string}"`;
  }
  if (typeof v === 'number' && schema['minimum'] !== undefined && v < (schema['minimum'] as number)) return `${at} must be at least ${schema['minimum'] as number}`;
  if (typeof v === 'number' && schema['maximum'] !== undefined && v > (schema['maximum'] as number)) return `${at} must be at most ${schema['maximum'] as number}`;
  if (Array.isArray(v)) {
    if (schema['minItems'] !== undefined && v.length < (schema['minItems'] as number)) return `${at} needs at least ${schema['minItems'] as number} item(s)`;
    if (schema['maxItems'] !== undefined && v.length > (schema['maxItems'] as number)) return `${at} takes at most ${schema['maxItems'] as number} items`;
    const items = schema['items'] as Schema | undefined;
    if (items) {
      for (let i = 0; i < v.length; i++) {
        const m = mismatch(items, v[i], `${at}[${i}]`);
        if (m) return m;
      }
    }
  }
  if (typeOf(v) === 'object') {
    const o = v as Record<string, unknown>;
    const props = (schema['properties'] ?? {}) as Record<string, Schema>;
    for (const r of (schema['required'] ?? []) as string[]) if (!(r in o)) return `${at} must have ${r}`;
    for (const [k, val] of Object.entries(o)) {
      const p = props[k];
      if (p === undefined) {
        if (schema['additionalProperties'] === false) return `${at} must not have ${k}`;
        continue;
      }
      const m = mismatch(p, val, `${at}.${k}`);
      if (m) return m;
    }
  }
  return undefined;
}

/** Checks a job's kind and spec; throws `JobSpecError` naming the first problem. */
export function checkJobSpec(kind: string, spec: unknown): JobKindName {
  if (!(JOB_KIND_NAMES as readonly string[]).includes(kind)) throw new JobSpecError(`job kind "${kind}" is not one this agent runs (${JOB_KIND_NAMES.join(', ')})`);
  const k = kind as JobKindName;
  const m = mismatch(JOB_SPEC_SCHEMAS[k] as Schema, spec, 'spec');
  if (m) throw new JobSpecError(`the ${k} job's ${m}; the agent did nothing`);
  return k;
}
