"""The Substrate family: reader (runtime metadata per block, Assets pallet and remark records mapped onto the
protocol's events), writer (signed mortal extrinsics), ink! event decoding. See README "Substrate / Polkadot"."""
