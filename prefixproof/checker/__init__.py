"""The independent certificate checker (`prefixproof check FILE --weights DIR`; docs/certificate-format.md).

It shares no code with the generator: it imports nothing from prefixproof.verify, prefixproof.theorems,
prefixproof.constructions or the rest of the application (an import-linter contract in setup.cfg). It reads
config.json and the safetensors files itself and re-derives every step of the certificate from the weights,
in float64 interval arithmetic rounded outward after every operation, under the rounding model stated in
docs/certificates.md ("Execution classes") and docs/certificate-format.md ("What the checker computes").
"""

TRUSTED = (
    "python-flint fmpq (exact rationals: the decoder's distance to the grid, the encoding slack)",
    "numpy float64: +, -, *, / and matrix products correctly rounded with round-to-nearest and gradual underflow "
    "(checked at start-up), and np.exp within 4 ulp",
    "scipy.sparse for CSR products (the same IEEE arithmetic), safetensors' reader for the array files",
    "the rounding model of docs/certificates.md 'Execution classes' (per-operation u, eta, exp bound)",
    "the semantics of docs/semantics.md and the fingerprint recipe of docs/format.md",
)
