"""The generator networks of the parametric FVR methods, one file per family.

``nbnet`` (NbNet-B and the VGG-19 features of its perceptual loss), ``naive`` (Guo et
al.'s decoder), ``vec2face`` (Duong et al.'s generator and critic); ``layers`` holds the
blocks they share. Each file names its paper and the source of its defaults. A method's
network is chosen through the methods registry (`reconstruction.methods.METHODS`).
"""
