import featurize
import numpy as np


def test_features_of_a_sentence():
    vec = featurize.features("The cat sat. The cat ran.")
    assert vec.shape == (4,)
    assert vec[0] == 6 and vec[1] == 2


def test_matrix_shape():
    assert featurize.matrix(["a b", "c"]).shape == (2, 4)
    assert featurize.matrix([]).shape == (0, 4)
    assert np.isclose(featurize.features("a a")[3], 0.5)
