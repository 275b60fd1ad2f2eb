// Never loaded on current Node: node-dtls-client uses node:crypto's AEAD ciphers there.
throw new Error('node-aead-crypto stub: not available (edgeferry ships an empty stand-in)');
