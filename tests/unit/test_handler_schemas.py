"""What each service's handler declares it takes: the consumer loop dead-letters every other schema for it."""

from __future__ import annotations

import pytest

from services.attribution.consumer import AttributionHandler
from services.audit.consumer import AuditHandler
from services.fanout.consumer import FanoutHandler
from services.skan.consumer import SkanHandler
from shared.avro import codec
from shared.forwarding.forwarder import ForwarderHandler
from shared.kafka.consumer import expected_schemas
from shared.kafka.records import InRecord, OutRecord

DECLARED = {
    AttributionHandler: {"apprefer.Click", "apprefer.RawEvent"},
    SkanHandler: {"apprefer.SkanPostback"},
    AuditHandler: {"apprefer.AuditRecord"},
    FanoutHandler: {"apprefer.AttributedEvent", "apprefer.SkanDecoded"},
    ForwarderHandler: {"apprefer.ForwardJob"},
}


@pytest.mark.parametrize("handler", list(DECLARED), ids=lambda handler: handler.__name__)
def test_each_handler_declares_the_schemas_of_its_topics(handler: type) -> None:
    assert expected_schemas(handler) == DECLARED[handler]
    assert expected_schemas(handler) <= set(codec().schema_names())  # no typo: every name is a schema


def test_a_handler_that_declares_nothing_takes_any_schema() -> None:
    def anything(records: list[InRecord]) -> list[OutRecord]:
        return []

    assert expected_schemas(anything) is None
