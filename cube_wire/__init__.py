"""The wire formats the client (``cube_lsp``) and the server side (``cube_stack``) share, and nothing else.

One definition for both ends, so that what the agent writes is exactly what the client reads: the
SEV-SNP report layout and product names (:mod:`~cube_wire.report`), the extended-report certificate
table (:mod:`~cube_wire.certtable`), the agent's attestation document (:mod:`~cube_wire.document`),
the REPORT_DATA binding (:mod:`~cube_wire.binding`), SPKI hashing (:mod:`~cube_wire.spki`), the
attestation policy file (:mod:`~cube_wire.policy`) and the error root :class:`~cube_wire.errors.CubeError`
with the attestation errors. Its only dependency is ``cryptography``: the server side installs it without
the client's (pygls, tree-sitter), and ``cube_stack`` imports nothing from ``cube_lsp``.
"""
