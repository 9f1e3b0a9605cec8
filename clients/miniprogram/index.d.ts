export * from './chatrelay';
