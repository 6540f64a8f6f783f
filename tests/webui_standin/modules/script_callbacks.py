"""Mirrors A1111 modules/script_callbacks.py: on_ui_settings, on_ui_tabs, on_before_ui, on_infotext_pasted
(lines 378-383, 572-578) and their callers."""
callback_map = {"callbacks_ui_settings": [], "callbacks_ui_tabs": [], "callbacks_before_ui": [],
                "callbacks_infotext_pasted": []}


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


def on_infotext_pasted(callback, *, name=None):
    callback_map["callbacks_infotext_pasted"].append(callback)


def infotext_pasted_callback(infotext, params):
    for callback in callback_map["callbacks_infotext_pasted"]:
        callback(infotext, params)
