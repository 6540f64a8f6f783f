"""Mirrors A1111 modules/script_callbacks.py: on_ui_settings, on_ui_tabs, on_before_ui and their callers."""
callback_map = {"callbacks_ui_settings": [], "callbacks_ui_tabs": [], "callbacks_before_ui": []}


def on_ui_settings(callback, *, name=None):
    callback_map["callbacks_ui_settings"].append(callback)


def on_ui_tabs(callback, *, name=None):
    callback_map["callbacks_ui_tabs"].append(callback)


def on_before_ui(callback, *, name=None):
    callback_map["callbacks_before_ui"].append(callback)


def ui_settings_callback():
    for callback in callback_map["callbacks_ui_settings"]:
        callback()


def ui_tabs_callback():
    res = []
    for callback in callback_map["callbacks_ui_tabs"]:
        res += callback() or []
    return res


def before_ui_callback():
    for callback in callback_map["callbacks_before_ui"]:
        callback()
