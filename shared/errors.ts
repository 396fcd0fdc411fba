/**
 * Typed errors. Two kinds matter everywhere:
 * - permanent: bad input or configuration; retrying cannot help, so reject / quarantine / fail the item;
 * - transient: throttling, timeouts, 5xx; fail the record so that SQS redelivers it.
 */
export type ErrorKind = 'permanent' | 'transient';

/** Where in a file or stream an error was found. */
export interface ErrorLocation {
  /** 1-based record number (CSV data row, JSON array element, NDJSON line, Parquet row). */
  readonly row?: number;
  /** 1-based physical line, when it differs from the row (quoted newlines). */
  readonly line?: number;
  /** 0-based byte offset in the (decompressed) stream. */
  readonly byteOffset?: number;
}

/** Base class of every error Pulse Ingest throws on purpose. */
export class PulseError extends Error {
  readonly kind: ErrorKind;
  constructor(message: string, kind: ErrorKind, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PulseError';
    this.kind = kind;
  }
}

/** A required setting is missing or invalid. Raised at cold start. */
export class ConfigError extends PulseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'permanent', options);
    this.name = 'ConfigError';
  }
}

/** Bad input that no retry can fix. */
export class PermanentError extends PulseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'permanent', options);
    this.name = 'PermanentError';
  }
}

/** A file that cannot be parsed any further: what went wrong and where. */
export class MalformedFileError extends PermanentError {
  readonly location: ErrorLocation;
  /** The message without the location. */
  readonly reason: string;
  constructor(message: string, location: ErrorLocation = {}, options?: { cause?: unknown }) {
    super(`${message}${formatLocation(location)}`, options);
    this.name = 'MalformedFileError';
    this.location = location;
    this.reason = message;
  }
}

/** A file whose type Pulse Ingest does not read. */
export class UnsupportedFormatError extends PermanentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnsupportedFormatError';
  }
}

/** A compressed stream that inflates beyond the configured bound (a gzip bomb, or simply too large). */
export class InflationLimitError extends MalformedFileError {
  constructor(message: string, location: ErrorLocation = {}) {
    super(message, location);
    this.name = 'InflationLimitError';
  }
}

/**
 * A long file whose continuations keep redoing earlier work instead of going on (a record checkpoint whose
 * records take a whole invocation to parse again): its attempts ran out on hand-overs without progress.
 */
export class NoProgressError extends PermanentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NoProgressError';
  }
}

/** A message on a queue that is not what the consumer expects; quarantined, never retried. */
export class InvalidMessageError extends PermanentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InvalidMessageError';
  }
}

/**
 * A SendMessageBatch entry SQS refused as the sender's fault (a character it does not allow, a message too
 * large): sending it again would be refused the same way. `entryId` names the entry. Its name stays
 * `PermanentError`, on purpose: it is what a file's ledger item has always recorded as its `errorType`
 * for a refused message, and operators' queries may match it.
 */
export class MessageRefusedError extends PermanentError {
  readonly entryId: string;
  readonly code: string;
  constructor(message: string, entryId: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.entryId = entryId;
    this.code = code;
  }
}

/** A failure worth retrying later: throttling, timeouts, 5xx, a lost connection. */
export class TransientError extends PulseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'transient', options);
    this.name = 'TransientError';
  }
}

/** Entries of a SendMessageBatch call still failing after every retry. */
export class SendFailedError extends TransientError {
  readonly failed: number;
  constructor(message: string, failed: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SendFailedError';
    this.failed = failed;
  }
}

/** Another worker holds a live lease on the file; the event is retried later, never dropped. */
export class FileBusyError extends TransientError {
  constructor(message: string) {
    super(message);
    this.name = 'FileBusyError';
  }
}

/** The worker no longer owns the ledger lease it is trying to use. */
export class LeaseLostError extends PulseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'transient', options);
    this.name = 'LeaseLostError';
  }
}

/**
 * Rejects could not be written to the quarantine (S3 refused the object, or failed): transient or permanent
 * as its cause is. The message names the object and S3's answer.
 */
export class QuarantineError extends PulseError {
  constructor(message: string, options: { cause: unknown }) {
    super(message, isTransient(options.cause) ? 'transient' : 'permanent', options);
    this.name = 'QuarantineError';
  }
}

const TRANSIENT_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'TransactionConflictException',
  'InternalServerError',
  'InternalError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'SlowDown',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'KMSThrottlingException',
]);
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
]);

/**
 * True when retrying later may succeed: our own transient errors, and AWS SDK or network errors that
 * signal throttling, a timeout or a server-side fault. Everything else is treated as permanent.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof PulseError) return err.kind === 'transient';
  if (typeof err !== 'object' || err === null) return false;
  const e = err as {
    name?: string;
    code?: string;
    $retryable?: unknown;
    $fault?: string;
    $metadata?: { httpStatusCode?: number };
    cause?: unknown;
  };
  if (e.$retryable) return true;
  if (e.name && TRANSIENT_NAMES.has(e.name)) return true;
  if (e.code && TRANSIENT_CODES.has(e.code)) return true;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  if (e.$fault === 'server') return true;
  if (e.cause && e.cause !== err) return isTransient(e.cause);
  return false;
}

/** Short `Name: message` for ledgers and logs. */
export function describeError(err: unknown): { type: string; message: string } {
  if (err instanceof Error) return { type: err.name, message: err.message.slice(0, 1000) };
  return { type: 'Error', message: String(err).slice(0, 1000) };
}

function formatLocation(loc: ErrorLocation): string {
  const parts: string[] = [];
  if (loc.row !== undefined) parts.push(`row ${loc.row}`);
  if (loc.line !== undefined) parts.push(`line ${loc.line}`);
  if (loc.byteOffset !== undefined) parts.push(`byte ${loc.byteOffset}`);
  return parts.length ? ` (at ${parts.join(', ')})` : '';
}

/** Errors that mean the object version is gone (deleted, or overwritten in an unversioned bucket). */
export function isObjectGone(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return (
    e?.name === 'NoSuchKey' ||
    e?.name === 'NoSuchVersion' ||
    e?.name === 'PreconditionFailed' ||
    (e?.name === 'NotFound' && e?.$metadata?.httpStatusCode === 404) ||
    e?.$metadata?.httpStatusCode === 412
  );
}
