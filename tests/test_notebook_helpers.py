import numpy as np
import pytest

from eqlib import notebook


def test_glue_keeps_plain_numbers_and_rejects_bad_names():
    assert notebook.glue("acc-test", np.float32(0.5)) == 0.5
    assert type(notebook.GLUED["acc-test"]) is float
    with pytest.raises(ValueError, match="glue name"):
        notebook.glue("a b", 1)
