"""check_grad: options, the loss and the gradient under test, one module per mode,
the verdicts assembled.
"""
