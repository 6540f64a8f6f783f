"""Mirrors A1111 modules/options.py (OptionInfo, Options.add_option) as re-exported by modules/shared.py."""


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before="", comment_after="", infotext=None, restrict_api=False,
                 category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section


class Options:
    def __init__(self):
        self.data_labels = {}
        self.data = {}

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)

    def __getattr__(self, item):
        if item in self.__dict__.get("data", {}):
            return self.data[item]
        if item in self.__dict__.get("data_labels", {}):
            return self.data_labels[item].default
        raise AttributeError(item)


opts = Options()
