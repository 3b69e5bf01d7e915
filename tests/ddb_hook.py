"""Counting and checking every DynamoDB request (B2 request units, R16 tenant keys, no Scan).

Units follow the published formulas (SERVERLESS-PERF-REL.md §2.1), not the emulator's
ConsumedCapacity: writes ⌈KB⌉ (×2 in a transaction), reads ⌈4 KB⌉ × 0.5/1/2.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from typing import Any

from chalicelib.store import db, schema

KEY_ATTRS = {schema.PK} | {g.pk for g in schema.GSIS}


def _size(item: dict[str, Any]) -> int:
    return len(json.dumps(item, separators=(",", ":")))


def _wru(item: dict[str, Any], transactional: bool) -> float:
    return max(1, math.ceil(_size(item) / 1024)) * (2 if transactional else 1)


class RequestLog:
    """Thread-safe counters of operations and units, plus violations found."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.operations: Counter[str] = Counter()
            self.write_units = 0.0
            self.read_units = 0.0
            self.violations: list[str] = []

    @property
    def requests(self) -> int:
        return sum(self.operations.values())

    def _check_key(self, op: str, key_values: list[str]) -> None:
        clinic = db.current_clinic()
        for value in key_values:
            if clinic is None:
                if not (value.startswith("C#") or value == "OPERATOR#CLINICS"):
                    self.violations.append(f"{op}: key {value!r} has no clinic prefix")
            elif value != f"C#{clinic}" and not value.startswith(f"C#{clinic}#"):
                self.violations.append(f"{op}: key {value!r} is outside clinic {clinic!r}")

    def hook(self, op: str, params: dict[str, Any]) -> None:
        with self._lock:
            self.operations[op] += 1
            if op == "Scan":
                self.violations.append("Scan request")
            keys: list[str] = []

            def from_item(item: dict[str, Any]) -> None:
                for attr in KEY_ATTRS:
                    if attr in item and "S" in item[attr]:
                        keys.append(item[attr]["S"])

            if op in ("GetItem", "DeleteItem", "UpdateItem"):
                from_item(params.get("Key", {}))
                if op == "UpdateItem":
                    self.write_units += 1
                elif op == "GetItem":
                    self.read_units += 1 if params.get("ConsistentRead") else 0.5
            elif op == "PutItem":
                from_item(params.get("Item", {}))
                self.write_units += _wru(params.get("Item", {}), False)
            elif op == "Query":
                for value in params.get("ExpressionAttributeValues", {}).values():
                    if "S" in value and (value["S"].startswith("C#") or value["S"] == "OPERATOR#CLINICS"):
                        keys.append(value["S"])
                        break
                else:
                    self.violations.append("Query without a clinic key")
                self.read_units += 1 if params.get("ConsistentRead") else 0.5
            elif op == "BatchGetItem":
                for req in params.get("RequestItems", {}).values():
                    for key in req.get("Keys", []):
                        from_item(key)
                        self.read_units += 1 if req.get("ConsistentRead") else 0.5
            elif op == "TransactWriteItems":
                for action in params.get("TransactItems", []):
                    (kind, body), = action.items()
                    if kind == "Put":
                        from_item(body["Item"])
                        self.write_units += _wru(body["Item"], True)
                    else:
                        from_item(body.get("Key", {}))
                        self.write_units += 2
            elif op == "BatchWriteItem":
                for reqs in params.get("RequestItems", {}).values():
                    for req in reqs:
                        item = req.get("PutRequest", {}).get("Item") or req.get("DeleteRequest", {}).get("Key", {})
                        from_item(item)
                        self.write_units += _wru(item, False)
            self._check_key(op, keys)
