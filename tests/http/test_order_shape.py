"""An order's fields are declared once (``OrderFields``): the view the shop answers with and
the wire shape the HTTP API writes must carry exactly those, and the items."""

import msgspec

from shopkeep.actors.order_messages import OrderView
from shopkeep.actors.order_state import OrderFields
from shopkeep.http.schemas import OrderOut


def names(kind: type[msgspec.Struct]) -> set[str]:
    return {field.encode_name for field in msgspec.structs.fields(kind)}


def test_the_view_is_the_declared_fields_and_the_items() -> None:
    assert names(OrderView) == names(OrderFields) | {"items"}


def test_the_wire_order_is_the_declared_fields_and_the_items() -> None:
    assert names(OrderOut) == names(OrderFields) | {"items"}
