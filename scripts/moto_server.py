"""Starts moto's server with fixes for the offline run: fast, isolated TransactWriteItems, scans and
SendMessage that do not slow down as a table or queue grows, and request limits AWS enforces and moto does
not (see each fix below, and docs/aws-fidelity.md).

moto 5.2.5 backs up a whole table (copy.deepcopy) once per item of every TransactWriteItems call, so
a transaction gets slower as the table grows (measured: 3.2 s for 99 puts into a 2,500-item table),
and concurrent transactions interleave. DynamoDB has neither problem. This launcher snapshots only
the items a transaction touches, restores them when it is cancelled, and runs transactions one at a
time. The other fixes are described where they are made; everything else is moto as published.

With `--state FILE` (the offline run), the S3, SQS and DynamoDB state is loaded from FILE at start and
written back to it when the server is stopped with SIGTERM or SIGINT, so `pulse local down` then `up`
keeps the bucket, queues and tables (moto itself keeps everything in memory only).

Usage: python moto_server.py [--state FILE] -H 127.0.0.1 -p PORT
"""

import bisect
import copy
import copyreg
import logging
import os
import pickle
import re
import signal
import sys
import threading

import moto.dynamodb.models as ddb_models
import moto.dynamodb.responses as ddb_responses
import moto.s3.responses as s3_responses
import moto.sqs.models as sqs_models
from moto.dynamodb.exceptions import MockValidationException
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.utilities import bytesize
from moto.s3.exceptions import MalformedXML
from moto.server import main
from moto.sqs.exceptions import BatchRequestTooLong, InvalidParameterValue, SQSException

_real_deepcopy = copy.deepcopy


class _NoTableCopy:
    """Stands in for the `copy` module inside moto's DynamoDB backend: tables are not deep-copied."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, *args, **kwargs):
        if isinstance(value, Table):
            return value
        return _real_deepcopy(value, *args, **kwargs)


ddb_models.copy = _NoTableCopy()
_original = ddb_models.DynamoDBBackend.transact_write_items
_lock = threading.Lock()


def _key_of(backend, op_type, op):
    table = backend.tables.get(op.get("TableName"))
    if table is None:
        return None
    if op_type != "Put":
        return op.get("Key")
    attrs = op.get("Item", {})
    if table.hash_key_attr not in attrs:
        return None
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None and table.range_key_attr in attrs:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _transact_write_items(self, transact_items):
    with _lock:
        before = []
        for entry in transact_items:
            if len(entry) != 1:
                continue
            op_type, op = next(iter(entry.items()))
            key = _key_of(self, op_type, op)
            if key is None:
                continue
            try:
                current = self.get_item(op["TableName"], key)
            except Exception:  # an invalid key: moto's own validation reports it
                continue
            attrs = _real_deepcopy(current.to_json()["Attributes"]) if current else None
            before.append((op["TableName"], key, attrs, op_type))
        try:
            result = _original(self, transact_items)
            _check_transaction_size(self, before)
            return result
        except Exception:
            for table_name, key, attrs, _op_type in reversed(before):
                if attrs is None:
                    try:
                        self.delete_item(table_name, key)
                    except Exception:
                        pass
                else:
                    self.put_item(table_name, attrs)
            raise


def _check_transaction_size(backend, before):
    """DynamoDB refuses a transaction whose items total more than 4 MB (checked here after moto applied it,
    so the caller's rollback undoes it): a Put counts the item it writes, an Update the item as updated, a
    Delete or ConditionCheck the item it names."""
    total = 0
    for table_name, key, attrs, op_type in before:
        if op_type in ("Put", "Update"):
            try:
                current = backend.get_item(table_name, key)
            except Exception:
                current = None
            total += current.size() if current else 0
        else:
            total += _item_bytes(attrs)
    if total > DYNAMODB_TRANSACTION_MAX_BYTES:
        raise MockValidationException(
            f"Transaction request cannot be larger than 4 MB (the items of this one total {total} bytes)"
        )


ddb_models.DynamoDBBackend.transact_write_items = _transact_write_items


# Scan pages: moto sorts every item (comparing DynamoType objects in Python) and then walks every item
# before ExclusiveStartKey, on every page, so a full scan is quadratic (measured: 109 s to count
# 61,600 items). Here the items are sorted on plain strings and the page's first item is found by
# bisection; the page itself is moto's own code. Scan order is unspecified in DynamoDB; it only has to
# be the same from page to page, which one sort key for both ensures.
_scan_start = threading.local()
_original_scan = Table.scan


def _key_part(value):
    return (value.type, str(value.value)) if value is not None else ("", "")


def _sort_key(item):
    return _key_part(item.hash_key) + _key_part(item.range_key)


def _raw_key_part(raw):
    if raw is None:
        return ("", "")
    ((type_, value),) = raw.items()
    return (type_, str(value))


def _all_items(self):
    # moto iterates the table's dict while other request threads may write to it; retry then.
    for attempt in range(20):
        try:
            if self.range_key_attr:
                items = [item for hash_set in list(self.items.values()) for item in list(hash_set.values())]
            else:
                items = list(self.items.values())
            break
        except RuntimeError:
            if attempt == 19:
                raise
    items.sort(key=_sort_key)
    start = getattr(_scan_start, "key", None)
    if start is None:
        return items
    return items[bisect.bisect_right(items, start, key=_sort_key):]


def _scan(self, filters, limit, exclusive_start_key, filter_expression=None, index_name=None,
          consistent_read=False, projection_expression=None, segments=(None, None)):
    kwargs = dict(filter_expression=filter_expression, index_name=index_name, consistent_read=consistent_read,
                  projection_expression=projection_expression, segments=segments)
    if exclusive_start_key is None or index_name or self.hash_key_attr not in exclusive_start_key:
        return _original_scan(self, filters, limit, exclusive_start_key, **kwargs)
    range_raw = exclusive_start_key.get(self.range_key_attr) if self.range_key_attr else None
    _scan_start.key = _raw_key_part(exclusive_start_key[self.hash_key_attr]) + _raw_key_part(range_raw)
    try:
        return _original_scan(self, filters, limit, None, **kwargs)
    finally:
        _scan_start.key = None


Table.all_items = _all_items
Table.scan = _scan


# SendMessage: moto reads a queue's attributes to learn whether it deduplicates by content, once in
# send_message and once more in add_message, and those attributes include the approximate message
# counts, each a scan of every message in the queue (with a clock reading per message). So sending n
# messages to a queue costs O(n^2): about a third of moto's CPU in `npm run bench`, and far more once a
# queue holds thousands of messages (a backlog in the offline run). SQS has no such cost. While a message
# is sent or added, the attributes read are only that flag, as moto would compute it.
_sqs_sending = threading.local()
_queue_attributes = sqs_models.Queue.attributes.fget


def _attributes(self):
    if getattr(_sqs_sending, "depth", 0) == 0:
        return _queue_attributes(self)
    if not self.fifo_queue:
        return {}
    value = getattr(self, "content_based_deduplication", False)
    return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}


def _sending(fn):
    def wrapper(*args, **kwargs):
        _sqs_sending.depth = getattr(_sqs_sending, "depth", 0) + 1
        try:
            return fn(*args, **kwargs)
        finally:
            _sqs_sending.depth -= 1

    return wrapper


sqs_models.Queue.attributes = property(_attributes)
sqs_models.SQSBackend.send_message = _sending(sqs_models.SQSBackend.send_message)
sqs_models.Queue.add_message = _sending(sqs_models.Queue.add_message)

# AWS request limits moto does not enforce (or enforces differently), so that the offline run is never kinder
# than AWS (docs/aws-fidelity.md). Each raises the error AWS documents for it.
# SQS: a message may hold only these characters (the SendMessage API reference); others are refused with
# InvalidMessageContents. moto accepts any.
_SQS_INVALID_CHARACTER = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SQS_INVALID_CONTENTS = (
    "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | "
    "#xE000 to #xFFFD | #x10000 to #x10FFFF"
)


class InvalidMessageContents(SQSException):
    def __init__(self) -> None:
        super().__init__("InvalidMessageContents", _SQS_INVALID_CONTENTS)


def _utf8_length(text):
    # A lone surrogate (which the check above refuses anyway) must not break the count.
    return len(text.encode("utf-8", "surrogatepass"))


_original_validate_message = sqs_models.SQSBackend._validate_message


def _validate_message(self, queue, message_body, *args, **kwargs):
    # SQS measures a message in bytes; moto compares characters, so a body of multi-byte characters could
    # pass moto at up to four times the queue's MaximumMessageSize.
    if _SQS_INVALID_CHARACTER.search(message_body):
        raise InvalidMessageContents()
    if _utf8_length(message_body) > queue.maximum_message_size:
        raise InvalidParameterValue(
            "One or more parameters are invalid. Reason: Message must be shorter than "
            f"{queue.maximum_message_size} bytes."
        )
    return _original_validate_message(self, queue, message_body, *args, **kwargs)


_original_send_message_batch = sqs_models.SQSBackend.send_message_batch


def _send_message_batch(self, queue_name, entries):
    # The batch's total is in bytes too; an entry with characters SQS refuses fails on its own (the result
    # of each entry is reported individually), the others are sent.
    total = sum(_utf8_length(entry["MessageBody"]) for entry in entries.values())
    if total > sqs_models.MAXIMUM_MESSAGE_LENGTH:
        raise BatchRequestTooLong(total)
    refused = []
    valid = {}
    for index, entry in entries.items():
        if _SQS_INVALID_CHARACTER.search(entry["MessageBody"]):
            refused.append(
                {"Id": entry["Id"], "SenderFault": True, "Code": "InvalidMessageContents",
                 "Message": _SQS_INVALID_CONTENTS}
            )
        else:
            valid[index] = entry
    messages, failed = _original_send_message_batch(self, queue_name, valid) if valid else ([], [])
    return messages, refused + failed


sqs_models.SQSBackend._validate_message = _validate_message
sqs_models.SQSBackend.send_message_batch = _send_message_batch

# DynamoDB: BatchWriteItem takes at most 25 put or delete requests (moto takes any number), and the items
# of one TransactWriteItems may total at most 4 MB (moto checks only the 100-item count).
DYNAMODB_BATCH_WRITE_MAX = 25
DYNAMODB_TRANSACTION_MAX_BYTES = 4 * 1024 * 1024
_original_batch_write_item = ddb_responses.DynamoHandler.batch_write_item


def _batch_write_item(self):
    count = sum(len(requests) for requests in self.body.get("RequestItems", {}).values())
    if count > DYNAMODB_BATCH_WRITE_MAX:
        raise MockValidationException(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
            "Map value must satisfy constraint: [Member must have length less than or equal to "
            f"{DYNAMODB_BATCH_WRITE_MAX}, Member must have length greater than or equal to 1]"
        )
    return _original_batch_write_item(self)


def _item_bytes(attrs):
    return sum(bytesize(name) + DynamoType(value).size() for name, value in (attrs or {}).items())


ddb_responses.DynamoHandler.batch_write_item = _batch_write_item

# S3: DeleteObjects takes at most 1,000 keys; more is a MalformedXML error (moto deletes any number).
S3_DELETE_OBJECTS_MAX = 1000
_original_delete_keys = s3_responses.S3Response._bucket_response_delete_keys


def _bucket_response_delete_keys(self, bucket_name, *args, **kwargs):
    import xmltodict

    objects = xmltodict.parse(self.body, strip_whitespace=False).get("Delete", {}).get("Object", [])
    if isinstance(objects, list) and len(objects) > S3_DELETE_OBJECTS_MAX:
        raise MalformedXML()
    return _original_delete_keys(self, bucket_name, *args, **kwargs)


s3_responses.S3Response._bucket_response_delete_keys = _bucket_response_delete_keys

# S3 keys: S3 refuses a key longer than 1,024 bytes of UTF-8 ("Naming Amazon S3 objects", S3 User Guide)
# with 400 KeyTooLongError ("Error responses", S3 API Reference), on every request that names a key
# (PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload, CopyObject's destination,
# GetObject, HeadObject, DeleteObject, tagging, ...). moto stores and serves such keys, so code that
# builds a key from a long one (a rejects key, a segment key) passed offline and failed on AWS. Every
# request on a key goes through S3Response._key_response; the body is the one S3 sends (with Size and
# MaxSizeAllowed). Keys named inside a request body (DeleteObjects) are left to moto.
S3_MAX_KEY_BYTES = 1024
_original_key_response = s3_responses.S3Response._key_response


def _key_response(self, request, full_url):
    size = len(self.parse_key_name().encode("utf-8"))
    if size > S3_MAX_KEY_BYTES:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>KeyTooLongError</Code>'
            f"<Message>Your key is too long</Message><Size>{size}</Size>"
            f"<MaxSizeAllowed>{S3_MAX_KEY_BYTES}</MaxSizeAllowed><RequestId>moto-key-too-long</RequestId></Error>"
        )
        return 400, {"content-type": "application/xml"}, body
    return _original_key_response(self, request, full_url)


s3_responses.S3Response._key_response = _key_response

# S3 → EventBridge: a bucket with EventBridge enabled sends "Object Created" events shaped as the S3 User
# Guide's "EventBridge event message structure" shows them: `detail.object.etag` (moto says `eTag`), `time` in
# ISO-8601 (moto writes it so only for an SQS target, the one the pipeline uses), `version-id` only for a versioned bucket (moto: null), `reason` the API call
# (PutObject, CopyObject, CompleteMultipartUpload; moto: "ObjectCreated"), the key as it is (not URL-encoded).
# moto matches the rules' patterns and delivers to their SQS targets itself; only the event is rebuilt here,
# so that s3-trigger reads offline what it reads on AWS (docs/aws-fidelity.md).
import moto.s3.notifications as s3_notifications  # noqa: E402

_S3_EVENTBRIDGE_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "PostObject",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}


def _send_event_bridge_message(account_id, bucket, event_name, key):
    try:
        import time
        import uuid

        from moto.events.models import events_backends

        detail_object = {"key": key.name, "size": key.size, "etag": key.etag.replace('"', ""),
                         "sequencer": "617F08299329D189"}
        if key.version_id and key.version_id != "null":
            detail_object["version-id"] = key.version_id
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": s3_notifications._detail_type(event_name),
            "source": "aws.s3",
            "account": account_id,
            # Epoch seconds here: moto's SQS target writes it as ISO-8601, as AWS sends it.
            "time": time.time(),
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name},
                "object": detail_object,
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": account_id,
                "source-ip-address": "127.0.0.1",
                "reason": _S3_EVENTBRIDGE_REASONS.get(event_name, event_name.split(":")[1]),
            },
        }
        events_backend = events_backends[account_id][bucket.region_name]
        for event_bus in events_backend.event_buses.values():
            for rule in event_bus.rules.values():
                rule.send_to_targets(event, transform_input=False)
    except Exception:  # noqa: BLE001 - asynchronous on AWS: the PutObject succeeds whatever happens here
        logging.getLogger(__name__).exception("S3 → EventBridge delivery failed")


s3_notifications._send_event_bridge_message = _send_event_bridge_message

# GetBucketNotificationConfiguration answers `<EventBridgeConfiguration/>` when the bucket sends its events to
# EventBridge (API reference); moto 5.2.5 leaves it out, so a read-modify-write of the configuration (what
# CDK's custom resource does for a bucket it did not create, and the offline run for an existing bucket)
# turned EventBridge off. The response is rebuilt with it.
from moto.core.responses import ActionResult, EmptyResult  # noqa: E402


def _get_bucket_notification(self):
    configuration = self.backend.get_bucket_notification_configuration(self.bucket_name)
    if not configuration:
        return self.serialized(EmptyResult())

    def build(item, arn_key):
        config = {"Id": item.id, arn_key: item.arn, "Events": item.events}
        if item.filters:
            config["Filter"] = {"Key": {"FilterRules": item.filters["S3Key"]["FilterRule"]}}
        return config

    result = {
        "TopicConfigurations": [build(t, "TopicArn") for t in configuration.topic],
        "QueueConfigurations": [build(q, "QueueArn") for q in configuration.queue],
        "LambdaFunctionConfigurations": [build(c, "LambdaFunctionArn") for c in configuration.cloud_function],
    }
    if configuration.event_bridge is not None:
        result["EventBridgeConfiguration"] = {}
    self.data["Action"] = "GetBucketNotificationConfiguration"
    return self.serialized(ActionResult(result))


s3_responses.S3Response.get_bucket_notification = _get_bucket_notification

PERSISTED = ("s3", "sqs", "dynamodb", "secretsmanager")

# Backends hold locks; a lock is pickled as a new, unlocked one.
copyreg.pickle(type(threading.RLock()), lambda _lock: (threading.RLock, ()))
copyreg.pickle(type(threading.Lock()), lambda _lock: (threading.Lock, ()))


def _rebuild_key_store(items):
    from moto.s3.utils import _VersionedKeyStore

    store = _VersionedKeyStore()
    for key, versions in items:
        store.setlist(key, versions)
    return store


def _reduce_key_store(store):
    # S3 keeps each key's versions in a dict subclass whose __setitem__ appends a version, so the
    # default pickling (which restores items through __setitem__) would nest the version lists.
    return (_rebuild_key_store, ([(key, dict.__getitem__(store, key)) for key in dict.keys(store)],))


def _register_reducers():
    from moto.s3.utils import _VersionedKeyStore

    copyreg.pickle(_VersionedKeyStore, _reduce_key_store)


def _load_state(path):
    from moto.backends import get_backend

    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        state = pickle.load(f)
    for name, regions in state.items():
        backend = get_backend(name)
        backend.clear()
        backend.update(regions)
    print(f"moto_server: state loaded from {path}", file=sys.stderr, flush=True)


def _save_state(path):
    from moto.backends import get_backend

    with _lock:
        blob = pickle.dumps({name: dict(get_backend(name)) for name in PERSISTED})
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)
    print(f"moto_server: state saved to {path} ({len(blob)} bytes)", file=sys.stderr, flush=True)


def _persist_to(path):
    import moto.server as moto_server

    _register_reducers()
    _load_state(path)

    def stop(signum, _frame):
        try:
            _save_state(path)
        finally:
            os._exit(0 if signum == signal.SIGTERM else 130)

    # moto's main() installs its own SIGTERM/SIGINT handler by this name.
    moto_server.signal_handler = stop


if __name__ == "__main__":
    # One log line per request would grow without bound in a long offline run.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if len(sys.argv) > 2 and sys.argv[1] == "--state":
        _persist_to(sys.argv[2])
        del sys.argv[1:3]
    main()
