"""Mirrors A1111 modules/sd_unet.py lines 6-7: the U-Net that replaces the loaded one (TensorRT and the
like), None while the loaded one runs; its UNetModel_forward (lines 87-91) then bypasses the ldm layers."""
current_unet_option = None
current_unet = None
