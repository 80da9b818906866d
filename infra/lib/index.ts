export * from './herald';
