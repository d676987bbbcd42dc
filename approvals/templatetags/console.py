from django import template

from approvals.console.forms import field_name

register = template.Library()


@register.filter
def show_value(value) -> str:
    """A capability value as a reviewer reads it."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value is None:
        return "—"
    return str(value)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None


@register.filter
def field_name_of(capability) -> str:
    """The form field of a capability's widget."""
    return field_name(capability)

