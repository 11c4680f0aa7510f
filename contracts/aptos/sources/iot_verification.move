/// IoT data hashes on chain: the oracle stores the Merkle root of a window of sensor readings; a repeated root
/// aborts (E_ROOT_EXISTS), so a retried write cannot anchor twice.
module carbonledger::iot_verification {
    use std::error;
    use std::vector;
    use aptos_framework::event;
    use aptos_framework::timestamp;
    use aptos_std::smart_table::{Self, SmartTable};
    use carbonledger::carbon_credit;

    /// This root was stored before.
    const E_ROOT_EXISTS: u64 = 1;
    /// A root must be 32 bytes.
    const E_BAD_ROOT: u64 = 2;

    struct Anchors has key {
        next_anchor: u64,
        roots: SmartTable<vector<u8>, u64>,
    }

    #[event]
    struct Anchored has drop, store {
        anchor_id: u64,
        root: vector<u8>,
        leaf_count: u64,
        window_start: u64,
        window_end: u64,
        quality_score: u64,
    }

    fun init_module(admin: &signer) {
        move_to(admin, Anchors { next_anchor: 1, roots: smart_table::new() });
    }

    public entry fun store_data_hash(
        oracle: &signer, root: vector<u8>, leaf_count: u64, window_start: u64, window_end: u64, quality_score: u64,
    ) acquires Anchors {
        carbon_credit::assert_oracle(oracle);
        assert!(vector::length(&root) == 32, error::invalid_argument(E_BAD_ROOT));
        let a = borrow_global_mut<Anchors>(@carbonledger);
        assert!(!smart_table::contains(&a.roots, root), error::already_exists(E_ROOT_EXISTS));
        smart_table::add(&mut a.roots, root, timestamp::now_seconds());
        let anchor_id = a.next_anchor;
        a.next_anchor = anchor_id + 1;
        event::emit(Anchored { anchor_id, root, leaf_count, window_start, window_end, quality_score });
    }

    #[view]
    /// When the root was stored (seconds), 0 when never.
    public fun anchored_at(root: vector<u8>): u64 acquires Anchors {
        let a = borrow_global<Anchors>(@carbonledger);
        if (smart_table::contains(&a.roots, root)) *smart_table::borrow(&a.roots, root) else 0
    }
}
