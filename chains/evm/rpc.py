"""Kept for imports written before the JSON-RPC client became family-neutral: see `chains.rpc`."""

from chains.rpc import Middleware, RpcClient, RpcError, RpcTransportError, Send, metrics_middleware, retry_middleware

__all__ = ["Middleware", "RpcClient", "RpcError", "RpcTransportError", "Send", "metrics_middleware", "retry_middleware"]
