"""ISTRC (Li & Wang, "Image Semantic Transformation: Faster, Lighter and Stronger"), the
Image-Semantic-Transformation-Reconstruction-Circle of the spec ``shared/specs/istrc.md``: a
frozen face encoder's unit-sphere latents, decoded through a BEGAN discriminator's decoder and
edited by gradient steps of latent attribute classifiers. The package will hold the ISTRC stages;
so far it has ``face_encoder`` (E, the frozen unit-sphere face encoder), ``triplet_loss`` and
``facenet_module`` (E's FaceNet stand-in, trained with semi-hard triplets, and its verification),
``began_networks`` and ``began`` (the BEGAN whose discriminator's decoder draws the faces) and the
pure-torch latent pieces: ``sphere`` (normalising, slerp and lerp, n-face means, arithmetic, noise
variations) and ``edit_path`` (the semantic transformation).
"""
