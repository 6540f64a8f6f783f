"""Run by the WebUI at every launch and by ComfyUI-Manager in the node folder.

Skip Tuning needs nothing beyond the host's own torch, so this installs nothing and cannot fail.
"""
