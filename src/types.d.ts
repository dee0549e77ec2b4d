declare module '*.js' {
  const path: string
  export default path
}
declare module '*.css' {
  const path: string
  export default path
}
declare module '*.txt' {
  const text: string
  export default text
}
