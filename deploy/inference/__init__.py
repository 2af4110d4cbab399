"""Running a bundle's ONNX / LiteRT stages on the board."""
