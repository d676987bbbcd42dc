from django import template

from approvals.console.forms import field_name
from toggles.values import value_text

register = template.Library()


register.filter("show_value", value_text)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None


@register.filter
def field_name_of(capability) -> str:
    """The form field of a capability's widget."""
    return field_name(capability)
