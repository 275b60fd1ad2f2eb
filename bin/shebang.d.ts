export function readShebang(file: string): { env: Record<string, string>; flags: string[] };
