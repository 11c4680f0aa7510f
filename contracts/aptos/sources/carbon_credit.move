/// Carbon credits: one fungible asset per credit batch, with roles.
///
/// The package's publisher is the admin; the admin grants ISSUER (may create batches and mint) and ORACLE (may
/// settle marketplace sales paid off chain and store IoT data hashes). Every batch is a named object whose address
/// is the asset's metadata; holders keep credits in their primary fungible stores, so any wallet sees them. A
/// retirement burns the holder's credits and issues a certificate id.
module carbonledger::carbon_credit {
    use std::error;
    use std::signer;
    use std::string::String;
    use std::option;
    use std::vector;
    use aptos_framework::event;
    use aptos_framework::fungible_asset::{Self, MintRef, BurnRef, TransferRef, Metadata};
    use aptos_framework::object::{Self, Object};
    use aptos_framework::primary_fungible_store;
    use aptos_std::smart_table::{Self, SmartTable};

    friend carbonledger::marketplace;

    /// The caller is not the admin.
    const E_NOT_ADMIN: u64 = 1;
    /// The caller lacks the ISSUER role.
    const E_NOT_ISSUER: u64 = 2;
    /// The caller lacks the ORACLE role.
    const E_NOT_ORACLE: u64 = 3;
    /// No credit batch with this id.
    const E_NO_BATCH: u64 = 4;
    /// Amounts must be positive.
    const E_ZERO_AMOUNT: u64 = 5;
    /// This verification hash was used by an earlier mint.
    const E_VERIFICATION_USED: u64 = 6;
    /// A hash must be 32 bytes.
    const E_BAD_HASH: u64 = 7;

    struct Roles has key {
        issuers: vector<address>,
        oracles: vector<address>,
    }

    struct Registry has key {
        next_batch: u64,
        next_certificate: u64,
        batches: SmartTable<u64, address>,
        used_verifications: SmartTable<vector<u8>, bool>,
    }

    struct BatchRefs has key {
        mint: MintRef,
        burn: BurnRef,
        transfer: TransferRef,
    }

    #[event]
    struct BatchCreated has drop, store {
        batch_id: u64,
        metadata: address,
        project_id: String,
        vintage: u16,
        methodology: String,
        registry: String,
        serial_number: String,
        metadata_hash: vector<u8>,
    }

    #[event]
    struct Minted has drop, store {
        batch_id: u64,
        to: address,
        amount: u64,
        verification_hash: vector<u8>,
    }

    #[event]
    struct Transferred has drop, store {
        batch_id: u64,
        from: address,
        to: address,
        amount: u64,
    }

    #[event]
    struct Retired has drop, store {
        certificate_id: u64,
        holder: address,
        batch_id: u64,
        amount: u64,
        beneficiary: String,
        reason: String,
    }

    fun init_module(admin: &signer) {
        move_to(admin, Roles { issuers: vector[signer::address_of(admin)], oracles: vector[] });
        move_to(admin, Registry {
            next_batch: 1, next_certificate: 1, batches: smart_table::new(), used_verifications: smart_table::new(),
        });
    }

    public entry fun grant_issuer(admin: &signer, who: address) acquires Roles {
        assert!(signer::address_of(admin) == @carbonledger, error::permission_denied(E_NOT_ADMIN));
        vector::push_back(&mut borrow_global_mut<Roles>(@carbonledger).issuers, who);
    }

    public entry fun grant_oracle(admin: &signer, who: address) acquires Roles {
        assert!(signer::address_of(admin) == @carbonledger, error::permission_denied(E_NOT_ADMIN));
        vector::push_back(&mut borrow_global_mut<Roles>(@carbonledger).oracles, who);
    }

    public fun assert_oracle(who: &signer) acquires Roles {
        let roles = borrow_global<Roles>(@carbonledger);
        assert!(vector::contains(&roles.oracles, &signer::address_of(who)), error::permission_denied(E_NOT_ORACLE));
    }

    fun assert_issuer(who: &signer) acquires Roles {
        let roles = borrow_global<Roles>(@carbonledger);
        assert!(vector::contains(&roles.issuers, &signer::address_of(who)), error::permission_denied(E_NOT_ISSUER));
    }

    public entry fun create_batch(
        issuer: &signer, project_id: String, vintage: u16, methodology: String, registry: String,
        serial_number: String, metadata_hash: vector<u8>,
    ) acquires Roles, Registry {
        assert_issuer(issuer);
        assert!(vector::length(&metadata_hash) == 32, error::invalid_argument(E_BAD_HASH));
        let reg = borrow_global_mut<Registry>(@carbonledger);
        let batch_id = reg.next_batch;
        reg.next_batch = batch_id + 1;
        let seed = b"batch:";
        vector::append(&mut seed, std::bcs::to_bytes(&batch_id));
        let ctor = object::create_named_object(issuer, seed);
        primary_fungible_store::create_primary_store_enabled_fungible_asset(
            &ctor, option::none(), project_id, std::string::utf8(b"tCO2e"), 0, std::string::utf8(b""),
            std::string::utf8(b""),
        );
        let obj_signer = object::generate_signer(&ctor);
        move_to(&obj_signer, BatchRefs {
            mint: fungible_asset::generate_mint_ref(&ctor),
            burn: fungible_asset::generate_burn_ref(&ctor),
            transfer: fungible_asset::generate_transfer_ref(&ctor),
        });
        let metadata = object::address_from_constructor_ref(&ctor);
        smart_table::add(&mut reg.batches, batch_id, metadata);
        event::emit(BatchCreated {
            batch_id, metadata, project_id, vintage, methodology, registry, serial_number, metadata_hash,
        });
    }

    public entry fun mint(issuer: &signer, to: address, batch_id: u64, amount: u64, verification_hash: vector<u8>)
    acquires Roles, Registry, BatchRefs {
        assert_issuer(issuer);
        assert!(amount > 0, error::invalid_argument(E_ZERO_AMOUNT));
        let reg = borrow_global_mut<Registry>(@carbonledger);
        assert!(!smart_table::contains(&reg.used_verifications, verification_hash),
            error::already_exists(E_VERIFICATION_USED));
        smart_table::add(&mut reg.used_verifications, verification_hash, true);
        let refs = borrow_global<BatchRefs>(batch_address(batch_id));
        primary_fungible_store::mint(&refs.mint, to, amount);
        event::emit(Minted { batch_id, to, amount, verification_hash });
    }

    public entry fun transfer(holder: &signer, to: address, batch_id: u64, amount: u64) acquires Registry {
        assert!(amount > 0, error::invalid_argument(E_ZERO_AMOUNT));
        primary_fungible_store::transfer(holder, metadata(batch_id), to, amount);
        event::emit(Transferred { batch_id, from: signer::address_of(holder), to, amount });
    }

    public entry fun retire(holder: &signer, batch_id: u64, amount: u64, beneficiary: String, reason: String)
    acquires Registry, BatchRefs {
        assert!(amount > 0, error::invalid_argument(E_ZERO_AMOUNT));
        let who = signer::address_of(holder);
        let refs = borrow_global<BatchRefs>(batch_address(batch_id));
        primary_fungible_store::burn(&refs.burn, who, amount);
        let reg = borrow_global_mut<Registry>(@carbonledger);
        let certificate_id = reg.next_certificate;
        reg.next_certificate = certificate_id + 1;
        event::emit(Retired { certificate_id, holder: who, batch_id, amount, beneficiary, reason });
    }

    /// Moves credits between stores without the owner's signature (marketplace escrow only).
    public(friend) fun escrow_move(from: address, to: address, batch_id: u64, amount: u64) acquires Registry, BatchRefs {
        let refs = borrow_global<BatchRefs>(batch_address(batch_id));
        primary_fungible_store::transfer_with_ref(&refs.transfer, from, to, amount);
    }

    fun batch_address(batch_id: u64): address acquires Registry {
        let reg = borrow_global<Registry>(@carbonledger);
        assert!(smart_table::contains(&reg.batches, batch_id), error::not_found(E_NO_BATCH));
        *smart_table::borrow(&reg.batches, batch_id)
    }

    #[view]
    public fun metadata(batch_id: u64): Object<Metadata> acquires Registry {
        object::address_to_object<Metadata>(batch_address(batch_id))
    }

    #[view]
    public fun used_verification(verification_hash: vector<u8>): bool acquires Registry {
        smart_table::contains(&borrow_global<Registry>(@carbonledger).used_verifications, verification_hash)
    }

    #[view]
    public fun balance(owner: address, batch_id: u64): u64 acquires Registry {
        primary_fungible_store::balance(owner, metadata(batch_id))
    }
}
