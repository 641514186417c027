"""Faces: everything that looks at a face, on the CPU, with the insightface pack and OpenCV.

``analyzer`` finds faces and embeds them (the pack, its download and check), ``measures`` reads what a face
photo shows (sharpness, light, pose, what covers it, drawings, screens, filters), ``validation`` turns those
into the intake report on a set of selfies, and ``identity`` keeps a person's embedding and keypoints as an
identity file. This layer may import the basics (``config``, ``errors``, ``imaging``, ...) and nothing above
them: no torch, no GPU module, no flow, no web code.
"""
