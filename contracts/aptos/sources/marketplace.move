/// Listings of credits for a price per unit (in octas of APT); bought on chain, or settled by the oracle after a
/// payment made off chain, identified by a payment reference the module refuses twice.
module carbonledger::marketplace {
    use std::error;
    use std::signer;
    use std::string::String;
    use aptos_framework::aptos_account;
    use aptos_framework::event;
    use aptos_framework::object::{Self, ExtendRef};
    use aptos_std::smart_table::{Self, SmartTable};
    use carbonledger::carbon_credit;

    /// No listing with this id.
    const E_NO_LISTING: u64 = 1;
    /// Only the seller may cancel.
    const E_NOT_SELLER: u64 = 2;
    /// This payment reference settled an earlier sale.
    const E_PAYMENT_REF_USED: u64 = 3;
    /// The listing holds fewer credits than asked.
    const E_NOT_ENOUGH: u64 = 4;
    /// Amounts must be positive.
    const E_ZERO_AMOUNT: u64 = 5;
    /// A payment reference must not be empty.
    const E_EMPTY_PAYMENT_REF: u64 = 6;

    struct Listing has store, drop {
        seller: address,
        batch_id: u64,
        remaining: u64,
        price_per_unit: u64,
    }

    struct Market has key {
        escrow: ExtendRef,
        next_listing: u64,
        listings: SmartTable<u64, Listing>,
        used_refs: SmartTable<String, bool>,
    }

    #[event]
    struct Listed has drop, store {
        listing_id: u64,
        seller: address,
        batch_id: u64,
        amount: u64,
        price_per_unit: u64,
    }

    #[event]
    struct Sold has drop, store {
        listing_id: u64,
        buyer: address,
        seller: address,
        batch_id: u64,
        amount: u64,
        price_per_unit: u64,
        payment_ref: String,
    }

    #[event]
    struct Cancelled has drop, store {
        listing_id: u64,
        seller: address,
        batch_id: u64,
        amount: u64,
    }

    fun init_module(admin: &signer) {
        let ctor = object::create_named_object(admin, b"marketplace-escrow");
        move_to(admin, Market {
            escrow: object::generate_extend_ref(&ctor), next_listing: 1, listings: smart_table::new(),
            used_refs: smart_table::new(),
        });
    }

    #[view]
    public fun escrow_address(): address acquires Market {
        object::address_from_extend_ref(&borrow_global<Market>(@carbonledger).escrow)
    }

    #[view]
    public fun payment_ref_used(payment_ref: String): bool acquires Market {
        smart_table::contains(&borrow_global<Market>(@carbonledger).used_refs, payment_ref)
    }

    public entry fun list(seller: &signer, batch_id: u64, amount: u64, price_per_unit: u64) acquires Market {
        assert!(amount > 0, error::invalid_argument(E_ZERO_AMOUNT));
        let who = signer::address_of(seller);
        carbon_credit::escrow_move(who, escrow_address(), batch_id, amount);
        let m = borrow_global_mut<Market>(@carbonledger);
        let listing_id = m.next_listing;
        m.next_listing = listing_id + 1;
        smart_table::add(&mut m.listings, listing_id, Listing { seller: who, batch_id, remaining: amount, price_per_unit });
        event::emit(Listed { listing_id, seller: who, batch_id, amount, price_per_unit });
    }

    public entry fun cancel(seller: &signer, listing_id: u64) acquires Market {
        let escrow = escrow_address();
        let m = borrow_global_mut<Market>(@carbonledger);
        assert!(smart_table::contains(&m.listings, listing_id), error::not_found(E_NO_LISTING));
        let Listing { seller: owner, batch_id, remaining, price_per_unit: _ } = smart_table::remove(&mut m.listings, listing_id);
        assert!(owner == signer::address_of(seller), error::permission_denied(E_NOT_SELLER));
        carbon_credit::escrow_move(escrow, owner, batch_id, remaining);
        event::emit(Cancelled { listing_id, seller: owner, batch_id, amount: remaining });
    }

    public entry fun buy(buyer: &signer, listing_id: u64, amount: u64) acquires Market {
        let (seller, batch_id, price) = take(listing_id, amount);
        aptos_account::transfer(buyer, seller, price * amount);
        let who = signer::address_of(buyer);
        carbon_credit::escrow_move(escrow_address(), who, batch_id, amount);
        event::emit(Sold { listing_id, buyer: who, seller, batch_id, amount, price_per_unit: price,
                           payment_ref: std::string::utf8(b"") });
    }

    /// The oracle delivers credits after a fiat payment; a repeated `payment_ref` aborts (E_PAYMENT_REF_USED).
    public entry fun settle_offchain(oracle: &signer, listing_id: u64, buyer: address, amount: u64, payment_ref: String)
    acquires Market {
        carbon_credit::assert_oracle(oracle);
        assert!(!std::string::is_empty(&payment_ref), error::invalid_argument(E_EMPTY_PAYMENT_REF));
        {
            let m = borrow_global_mut<Market>(@carbonledger);
            assert!(!smart_table::contains(&m.used_refs, payment_ref), error::already_exists(E_PAYMENT_REF_USED));
            smart_table::add(&mut m.used_refs, payment_ref, true);
        };
        let (seller, batch_id, price) = take(listing_id, amount);
        carbon_credit::escrow_move(escrow_address(), buyer, batch_id, amount);
        event::emit(Sold { listing_id, buyer, seller, batch_id, amount, price_per_unit: price, payment_ref });
    }

    fun take(listing_id: u64, amount: u64): (address, u64, u64) acquires Market {
        assert!(amount > 0, error::invalid_argument(E_ZERO_AMOUNT));
        let m = borrow_global_mut<Market>(@carbonledger);
        assert!(smart_table::contains(&m.listings, listing_id), error::not_found(E_NO_LISTING));
        let l = smart_table::borrow_mut(&mut m.listings, listing_id);
        assert!(l.remaining >= amount, error::invalid_argument(E_NOT_ENOUGH));
        l.remaining = l.remaining - amount;
        (l.seller, l.batch_id, l.price_per_unit)
    }
}
