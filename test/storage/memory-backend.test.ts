/** Runs the backend conformance suite against `MemoryBackend`. */
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { backendConformance } from './conformance.js';

backendConformance('MemoryBackend', async () => new MemoryBackend());
