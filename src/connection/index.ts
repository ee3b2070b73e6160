/**
 * billiard-ts connections: `multiprocessing.connection` for Node, on the
 * wire exactly as Python (spec/connection.md).
 */

export { Connection, DEFAULT_MAX_MESSAGE_SIZE, type ConnectionOptions, type ReadOptions, type SendBytesOptions } from './connection.js';
export { Pipe, type PipeOptions } from './pipe.js';
export { addressType, arbitraryAddress, Client, defaultFamily, families, Listener, type Address, type ClientOptions, type Family, type ListenerOptions } from './listener.js';
export { answerChallenge, CHALLENGE, deliverChallenge, FAILURE, WELCOME, type DeliverOptions, type DigestName, type HandshakeOptions } from './handshake.js';
export { Sentinel, wait, type Waitable, type WaitOptions } from './wait.js';
export { AuthenticationError, BufferTooShort, EOFError, OSError, ProcessError, TimeoutError, type OSErrorCode } from './errors.js';
