"""Faces: everything that looks at a face, on the CPU, with the insightface pack and OpenCV.

``pack`` finds the face-model pack (a local folder, or antelopev2 downloaded and checked), ``analyzer``
finds faces and embeds them, ``measures`` reads what a face photo shows (sharpness, light, pose, what
covers it, drawings, screens, filters), ``rules`` turns those into one photo's issues, ``validation`` runs
the intake of a set of selfies (decoding, faces, the rules, the checks across photos, the report), and
``identity`` keeps a person's embedding and keypoints as an identity file. This layer may import the
basics (``config``, ``errors``, ``imaging``, ...) and nothing above them: no torch, no GPU module, no
flow, no web code.
"""
