package client

import "encoding/pem"

// pemDER returns the DER bytes of the first CERTIFICATE block of b.
func pemDER(b []byte) []byte {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil
		}
		if blk.Type == "CERTIFICATE" {
			return blk.Bytes
		}
	}
}
