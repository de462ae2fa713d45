"""The vision layer shared by extraction, the heads and end-to-end training: the keras.applications
networks by name (backbones), the conv base and its weights (convbase), image decoding (images),
and the Keras pieces a saved model holds (layers)."""
